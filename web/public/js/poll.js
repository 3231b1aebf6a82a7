// Live updates without a busy loop: ask again after a delay that grows each time
// (500 ms, 800 ms, 1.3 s ... up to 5 s), stop as soon as nothing more can change, pause
// while the tab is hidden, and give up after a while (the view offers a refresh then).
//
// The saga usually settles an order within a second or two, so the first answers come
// quickly; an order that waits on a stopped consumer costs one request every 5 s, not a
// stream of them.

/**
 * Calls `tick()` (async; resolves to true when done) after each delay until it is done,
 * `stop()` is called, or `giveUpAfterMs` has passed (then `onGiveUp()` is called).
 * `restart()` starts again from the shortest delay, e.g. after the user changed something.
 */
export function poll(tick, { firstMs = 500, factor = 1.6, maxMs = 5000, giveUpAfterMs = 180000, onGiveUp } = {}) {
  let delay = firstMs;
  let timer = null;
  let running = false;
  let stopped = false;
  let startedAt = Date.now();

  const schedule = () => {
    if (stopped || timer || running || document.hidden) return;
    timer = setTimeout(run, delay);
    delay = Math.min(maxMs, delay * factor);
  };

  async function run() {
    timer = null;
    if (stopped || document.hidden) return;
    running = true;
    let done = false;
    try {
      done = await tick();
    } catch {
      // A failed request (network, 5xx) is tried again at the next, longer, delay.
    }
    running = false;
    if (stopped) return;
    if (done) {
      stop();
    } else if (Date.now() - startedAt > giveUpAfterMs) {
      stop();
      onGiveUp?.();
    } else {
      schedule();
    }
  }

  const onVisibility = () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else {
      delay = firstMs;
      schedule();
    }
  };
  document.addEventListener('visibilitychange', onVisibility);

  function stop() {
    stopped = true;
    clearTimeout(timer);
    timer = null;
    document.removeEventListener('visibilitychange', onVisibility);
  }

  schedule();
  return {
    stop,
    get active() {
      return !stopped;
    },
    restart() {
      stop();
      stopped = false;
      delay = firstMs;
      startedAt = Date.now();
      document.addEventListener('visibilitychange', onVisibility);
      schedule();
    },
  };
}
