import { batchSizeFor, RateSchedule, Throttles } from './throttle.js';

describe('RateSchedule', () => {
  it('spaces messages by the rate', () => {
    const schedule = new RateSchedule(10);
    expect([0, 0, 0, 0].map(() => schedule.reserve(1_000))).toEqual([1_000, 1_100, 1_200, 1_300]);
  });
  it('lets a burst through at once, then spaces', () => {
    const schedule = new RateSchedule(10, 3);
    const slots = Array.from({ length: 5 }, () => schedule.reserve(1_000));
    expect(slots).toEqual([1_000, 1_000, 1_000, 1_100, 1_200]);
  });
  it('does not save up unused time beyond the burst', () => {
    const schedule = new RateSchedule(10);
    schedule.reserve(0);
    expect(schedule.reserve(60_000)).toBe(60_000);
    expect(schedule.reserve(60_000)).toBe(60_100);
  });
});

describe('Throttles', () => {
  it('applies domain limits across deliveries and ignores other domains', () => {
    const throttles = new Throttles([{ domain: 'gmail.com', perSecond: 2 }]);
    const a = throttles.schedule('d1', null, ['a@gmail.com', 'b@GMAIL.com', 'c@other.example'], 0);
    const b = throttles.schedule('d2', null, ['d@gmail.com'], 0);
    expect(a).toEqual([0, 500, 0]);
    expect(b).toEqual([1000]);
  });
  it('applies a delivery limit per hour', () => {
    const throttles = new Throttles([]);
    expect(throttles.schedule('d', 3600, ['a@x.example', 'b@x.example', 'c@x.example'], 0)).toEqual([0, 1000, 2000]);
  });
  it('keeps a share of each limit when engines share the work', () => {
    const throttles = new Throttles([{ domain: 'gmail.com', perSecond: 4 }]);
    throttles.setShare(0.5);
    expect(throttles.schedule('d', null, ['a@gmail.com', 'b@gmail.com', 'c@gmail.com'], 0)).toEqual([0, 500, 1000]);
    // Per delivery too: 3,600/h shared by two engines is one message every 2 s here.
    expect(throttles.schedule('e', 3600, ['a@x.example', 'b@x.example'], 0)).toEqual([0, 2000]);
    throttles.setShare(1);
    expect(throttles.schedule('f', 3600, ['a@x.example', 'b@x.example'], 0)).toEqual([0, 1000]);
  });
  it('cuts throttled deliveries into batches of about a second', () => {
    expect(batchSizeFor(null, 500)).toBe(500);
    expect(batchSizeFor(1000, 500)).toBe(1);
    expect(batchSizeFor(360_000, 500)).toBe(100);
    expect(batchSizeFor(36_000_000, 500)).toBe(500);
  });
});
