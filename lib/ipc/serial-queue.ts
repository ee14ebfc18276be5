// Runs async operations one after another, so concurrent sends (or receives) on one socket
// never interleave.

/**
 * Runs async operations one after another, so concurrent sends (or receives) never
 * interleave. When idle it starts the operation at once, so a close() right after the call
 * finds its wait and cancels it, as for any other pending wait.
 */
export class SerialQueue {
  #tail: Promise<void> | null = null;
  run<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#tail === null ? operation() : this.#tail.then(operation);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#tail = tail;
    void tail.then(() => {
      if (this.#tail === tail) this.#tail = null;
    });
    return result;
  }
}

