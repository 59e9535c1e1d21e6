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

/** Recipients with ids for `schedule`. */
const to = (...addresses: string[]) => addresses.map((address, i) => ({ id: `p${i}`, address }));
const times = (slots: { at: number }[]) => slots.map((slot) => slot.at);

describe('RateSchedule.peek', () => {
  it('tells the next slot without taking it', () => {
    const schedule = new RateSchedule(10);
    expect(schedule.peek(1_000)).toBe(1_000);
    expect(schedule.reserve(1_000)).toBe(1_000);
    expect(schedule.peek(1_000)).toBe(1_100);
    expect(schedule.peek(1_000)).toBe(1_100);
  });
});

describe('Throttles', () => {
  // A horizon long enough that every slot here waits in the worker.
  const far = 60_000;
  it('applies domain limits across deliveries and ignores other domains', () => {
    const throttles = new Throttles([{ domain: 'gmail.com', perSecond: 2 }], far);
    const a = throttles.schedule('d1', null, to('a@gmail.com', 'b@GMAIL.com', 'c@other.example'), 0);
    const b = throttles.schedule('d2', null, to('d@gmail.com'), 0);
    expect(times(a)).toEqual([0, 500, 0]);
    expect(times(b)).toEqual([1000]);
  });
  it('applies a delivery limit per hour', () => {
    const throttles = new Throttles([], far);
    expect(times(throttles.schedule('d', 3600, to('a@x.example', 'b@x.example', 'c@x.example'), 0))).toEqual([0, 1000, 2000]);
  });
  it('keeps a share of each limit when engines share the work', () => {
    const throttles = new Throttles([{ domain: 'gmail.com', perSecond: 4 }], far);
    throttles.setShare(0.5);
    expect(times(throttles.schedule('d', null, to('a@gmail.com', 'b@gmail.com', 'c@gmail.com'), 0))).toEqual([0, 500, 1000]);
    // Per delivery too: 3,600/h shared by two engines is one message every 2 s here.
    expect(times(throttles.schedule('e', 3600, to('a@x.example', 'b@x.example'), 0))).toEqual([0, 2000]);
    throttles.setShare(1);
    expect(times(throttles.schedule('f', 3600, to('a@x.example', 'b@x.example'), 0))).toEqual([0, 1000]);
  });
  it('gives back what is due past the horizon, and keeps its slot for when it comes back', () => {
    const throttles = new Throttles([{ domain: 'slow.test', perSecond: 2 }], 1000);
    const slots = throttles.schedule('d', null, to('a@slow.test', 'b@slow.test', 'c@slow.test', 'd@slow.test', 'e@other.example'), 0);
    expect(slots).toEqual([
      { at: 0, later: false, requeueAt: 0 },
      { at: 500, later: false, requeueAt: 500 },
      { at: 1000, later: false, requeueAt: 1000 },
      // Back in a worker half a horizon before its slot.
      { at: 1500, later: true, requeueAt: 1000 },
      { at: 0, later: false, requeueAt: 0 },
    ]);
    // Another recipient of the domain comes after the one given back (its slot is taken)...
    expect(throttles.schedule('d', null, [{ id: 'p9', address: 'z@slow.test' }], 0)).toEqual([{ at: 2000, later: true, requeueAt: 1500 }]);
    // ...which, back in time, waits in the worker for its own slot without taking another.
    expect(throttles.schedule('d', null, [{ id: 'p3', address: 'd@slow.test' }], 1000)).toEqual([{ at: 1500, later: false, requeueAt: 1500 }]);
    expect(throttles.schedule('d', null, [{ id: 'p8', address: 'y@slow.test' }], 1500)).toEqual([{ at: 2500, later: false, requeueAt: 2500 }]);
  });
  it('holds back early returns, and reserves again a slot missed by more than half a horizon', () => {
    const throttles = new Throttles([{ domain: 'slow.test', perSecond: 1 }], 1000);
    expect(times(throttles.schedule('d', null, to('a@slow.test', 'b@slow.test', 'c@slow.test'), 0))).toEqual([0, 1000, 2000]);
    // p2 (slot 2000) back too early: given back again, same slot.
    expect(throttles.schedule('d', null, [{ id: 'p2', address: 'c@slow.test' }], 500)).toEqual([{ at: 2000, later: true, requeueAt: 1500 }]);
    // Back a little late: it goes now.
    expect(throttles.schedule('d', null, [{ id: 'p2', address: 'c@slow.test' }], 2400)).toEqual([{ at: 2400, later: false, requeueAt: 2400 }]);
    // Another one back 1.5 s after its slot: a new one (3000 was the next free slot; now 3500).
    const late = new Throttles([{ domain: 'slow.test', perSecond: 1 }], 1000);
    late.schedule('d', null, to('a@slow.test', 'b@slow.test', 'c@slow.test'), 0);
    expect(late.schedule('d', null, [{ id: 'p2', address: 'c@slow.test' }], 3500)).toEqual([{ at: 3500, later: false, requeueAt: 3500 }]);
  });
  it('a recipient given back for its domain takes its delivery slot when it comes back', () => {
    const throttles = new Throttles([{ domain: 'slow.test', perSecond: 1 }], 1000);
    // 36,000/h: a delivery slot every 100 ms.
    const first = throttles.schedule('d', 36_000, to('a@slow.test', 'b@slow.test', 'c@slow.test', 'd@other.example'), 0);
    expect(times(first)).toEqual([0, 1000, 2000, 200]);
    // The one given back (c) did not take a delivery slot: d got the third.
    expect(first[2]!.later).toBe(true);
    expect(throttles.schedule('d', 36_000, [{ id: 'p2', address: 'c@slow.test' }], 1500)).toEqual([{ at: 2000, later: false, requeueAt: 2000 }]);
  });
  it('cuts throttled deliveries into batches of about a second', () => {
    expect(batchSizeFor(null, 500)).toBe(500);
    expect(batchSizeFor(1000, 500)).toBe(1);
    expect(batchSizeFor(360_000, 500)).toBe(100);
    expect(batchSizeFor(36_000_000, 500)).toBe(500);
  });
});
