// How dependency-cruiser resolves Herald's workspace imports (.dependency-cruiser.cjs): each
// @herald/x import, and each subpath it exports, to the workspace's TypeScript sources, so the
// rules see through package boundaries.
const { readdirSync, readFileSync } = require('node:fs');
const { join } = require('node:path');

/** `@herald/x` (and its subpath exports) → the workspace's source files. */
function workspaceAliases(root) {
  const alias = {};
  for (const group of ['apps', 'packages']) {
    for (const name of readdirSync(join(root, group))) {
      const dir = join(root, group, name);
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      alias[`${pkg.name}$`] = join(dir, 'src', 'index.ts');
      for (const [subpath, target] of Object.entries(pkg.exports ?? {})) {
        if (subpath === '.') continue;
        const file = typeof target === 'string' ? target : target.default;
        alias[`${pkg.name}${subpath.slice(1)}$`] = join(dir, file);
      }
    }
  }
  return alias;
}

module.exports = { resolve: { alias: workspaceAliases(join(__dirname, '..')), extensions: ['.ts', '.js'] } };
