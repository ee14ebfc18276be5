// Client object ids: 1 is wl_display, the client allocates upward below 0xff000000 (the
// server's range). An id is reused only after the compositor confirms with
// wl_display.delete_id that it, too, has forgotten the object.
export const SERVER_ID_START = 0xff00_0000;

export class ObjectIds {
  #next = 2;
  readonly #free: number[] = [];

  allocate(): number {
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    if (this.#next >= SERVER_ID_START) throw new RangeError('out of client object ids');
    return this.#next++;
  }

  /** After delete_id: the id may be handed out again. */
  release(id: number): void {
    if (id > 1 && id < SERVER_ID_START) this.#free.push(id);
  }
}
