// The one FinalizationRegistry: what an object dropped without close() must still give back
// (its fd, the parameter files a device keeps open, the bookkeeping that goes with a dma-buf)
// runs once when the object is collected. A cleanup must not capture the object itself, or
// the object never becomes collectable.
const registry = new FinalizationRegistry<() => void>((cleanup) => {
  try {
    cleanup();
  } catch {
    // Nothing to report to: the object is gone.
  }
});

/** Runs `cleanup` when `target` is collected, unless forgetCollected(target) runs first. */
export function cleanUpWhenCollected(target: object, cleanup: () => void): void {
  registry.register(target, cleanup, target);
}

/** target was cleaned up explicitly (closed): the collector must not do it again. */
export function forgetCollected(target: object): void {
  registry.unregister(target);
}
