// The public face of @herald/capture-sink: start a sink, inspect what it captured, steer its bounces.
export {
  type CapturedMessage,
  type CaptureSink,
  type CaptureSinkOptions,
  startCaptureSink,
} from './capture-sink.js';
export { parseRules, type SinkRule } from './rules.js';
