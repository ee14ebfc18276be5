// A sync_file: an fd that becomes readable once the fences it carries have signalled.
import { OwnedFd, type WaitOptions } from '../fd/owned-fd.js';

export class SyncFile extends OwnedFd {
  protected readonly kind = 'sync file';

  /** Takes ownership of `fd`. */
  constructor(fd: number) {
    super(fd);
  }

  /**
   * Resolves when every fence has signalled (at once when there were none). Rejects with
   * ClosedError when the sync file is closed meanwhile, with AbortError when `signal` aborts.
   */
  async wait({ signal }: WaitOptions = {}): Promise<void> {
    await this.waitReadable(signal);
  }
}
