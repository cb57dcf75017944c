/**
 * The order of a layer's asynchronous calls. A layer's forward, backward and sync take effect in
 * the order they were made, as if each were awaited before the next: each starts once the one
 * before it has settled (resolved or rejected), so that two calls never share the layer's state
 * (its saved forward, its backend regions, its running buffers) across an await. Depends on
 * nothing.
 *
 * @module
 */

/** A per-layer FIFO of asynchronous calls. */
export class CallQueue {
  /** The last call queued (it may reject: the next one runs after it either way). */
  #tail?: Promise<unknown>;
  /** Calls queued or running, of every kind (what a new call waits for). */
  #pending = 0;
  /** Of those, the ones {@linkcode busy} reports (not the background ones). */
  #counted = 0;

  /**
   * Whether a call is queued or running (not yet settled). A background call (dispose's
   * read-back) does not count: it changes nothing a synchronous method must wait for.
   */
  get busy(): boolean {
    return this.#counted > 0;
  }

  /**
   * Runs `call` after every call queued before it has settled, and resolves or rejects as it
   * does. An idle queue starts it at once (synchronously), so a lone call waits for nothing.
   * Later calls wait for a `background` call too; only {@linkcode busy} leaves it out.
   */
  run<T>(call: () => Promise<T>, background = false): Promise<T> {
    const after = this.#pending++ === 0 ? undefined : this.#tail;
    if (!background) this.#counted++;
    const run = () => this.#settle(call, background);
    const p = after ? after.then(run, run) : run();
    this.#tail = p;
    return p;
  }

  async #settle<T>(call: () => Promise<T>, background: boolean): Promise<T> {
    try {
      return await call();
    } finally {
      this.#pending--;
      if (!background) this.#counted--;
    }
  }
}
