// The vhost-user-gpu back end as a surface source: each scanout showing a resource is a
// surface ("scanout-0"), a SET_SCANOUT to another resource replaces its buffer, RESOURCE_FLUSH
// is damage, and a disabled scanout (or QEMU leaving, which resets the device) withdraws it.
// The back end owns the surfaces, valid until its next 'scanout' for that id: exactly the
// SurfaceSink contract, so nothing is copied or kept here but which surface each scanout shows.
import type { ExportedSurface } from '../../lib/guest/surface.js';
import type { FlushEvent, ScanoutEvent, VhostUserGpuBackend } from '../vhost-user-gpu/gpu-backend.js';
import type { SurfaceSink, SurfaceSource } from './source.js';

export interface VhostUserGpuSourceOptions {
  /** The device's scanout count (its `device.scanouts` setting); default 1. */
  scanouts?: number;
  /** close() also closes the back end (the sidecar program made it); default false. */
  ownsBackend?: boolean;
}

export class VhostUserGpuSource implements SurfaceSource {
  readonly kind = 'vhost-user-gpu';
  readonly #backend: VhostUserGpuBackend;
  readonly #scanouts: number;
  readonly #ownsBackend: boolean;
  /** The surface each scanout was last reported with. */
  readonly #shown = new Map<number, ExportedSurface>();
  #sink: SurfaceSink | null = null;
  readonly #onScanout = (event: ScanoutEvent): void => this.#scanout(event);
  readonly #onFlush = (event: FlushEvent): void => this.#flush(event);
  readonly #onWarning = (error: { message: string; code: string }): void => this.#sink?.warn(`vhost-user-gpu: ${error.message} (${error.code})`);

  constructor(backend: VhostUserGpuBackend, { scanouts = 1, ownsBackend = false }: VhostUserGpuSourceOptions = {}) {
    this.#backend = backend;
    this.#scanouts = scanouts;
    this.#ownsBackend = ownsBackend;
  }

  get description(): string {
    return `vhost-user-gpu back end on ${this.#backend.socketPath ?? 'an inherited fd'}`;
  }

  attach(sink: SurfaceSink): void {
    this.#sink = sink;
    for (let id = 0; id < this.#scanouts; id++) {
      const surface = this.#backend.scanout(id);
      if (surface) this.#scanout({ scanoutId: id, surface, resourceId: 0 });
    }
    this.#backend.on('scanout', this.#onScanout);
    this.#backend.on('flush', this.#onFlush);
    this.#backend.on('warning', this.#onWarning);
  }

  async close(): Promise<void> {
    this.#backend.off('scanout', this.#onScanout);
    this.#backend.off('flush', this.#onFlush);
    this.#backend.off('warning', this.#onWarning);
    this.#sink = null;
    this.#shown.clear();
    if (this.#ownsBackend) await this.#backend.close();
  }

  #scanout({ scanoutId, surface }: ScanoutEvent): void {
    const sink = this.#sink;
    if (!sink) return;
    const key = `scanout-${scanoutId}`;
    const before = this.#shown.get(scanoutId);
    if (!surface) {
      if (before) {
        this.#shown.delete(scanoutId);
        sink.withdraw(key);
      }
      return;
    }
    // Linux sends SET_SCANOUT several times for one resource, and the back end reuses one
    // export per resource: the same surface again is no new buffer.
    if (surface === before) return;
    this.#shown.set(scanoutId, surface);
    if (before) sink.replace(key, surface);
    else sink.add(key, `scanout ${scanoutId}`, surface);
  }

  #flush({ scanoutId, rect }: FlushEvent): void {
    if (this.#shown.has(scanoutId)) this.#sink?.damage(`scanout-${scanoutId}`, [{ x: rect.x, y: rect.y, width: rect.width, height: rect.height }]);
  }
}
