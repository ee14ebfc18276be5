// A sync_file: an fd that becomes readable once the fences it carries have signalled.
import { waitFor } from '../fd/readiness.js';
import { OwnedFd } from '../fd/owned-fd.js';

export class SyncFile extends OwnedFd {
  protected readonly kind = 'sync file';

  /** Takes ownership of `fd`. */
  constructor(fd: number) {
    super(fd);
  }

  /** Resolves when every fence has signalled (at once when there were none). */
  wait(): Promise<void> {
    return waitFor(this.fd, 'readable');
  }
}
