// An xdg-shell toplevel showing guest surfaces. present() imports a surface's dma-buf once
// (zwp_linux_buffer_params_v1 create, awaiting created/failed), then attaches, damages and
// commits it, and resolves on the frame callback: the compositor has shown it.
import { GuestDmabufError, InvalidArgumentError } from '../../core/errors.js';
import type { ExportedSurface } from '../../guest/surface.js';
import { drmFormats } from '../../formats/drm.js';
import type { ZwpLinuxDmabufV1 } from '../protocol/linux-dmabuf-v1.js';
import type { WlBuffer, WlCompositor, WlSurface } from '../protocol/wayland.js';
import type { XdgSurface, XdgToplevel, XdgWmBase } from '../protocol/xdg-shell.js';
import type { WaylandConnection } from './connection.js';
import { fourccName, UnsupportedFormatError } from './errors.js';
import { ImportedBuffer } from './imported-buffer.js';

export interface WindowOptions {
  title?: string;
  width: number;
  height: number;
  fullscreen?: boolean;
  signal?: AbortSignal;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface PresentOptions {
  /** Changed rectangles in buffer pixels; default: the whole surface. */
  damage?: readonly Rect[];
  signal?: AbortSignal;
}

/** The compositor could not import a dma-buf (zwp_linux_buffer_params_v1.failed). */
export class ImportFailedError extends GuestDmabufError {
  override name = 'ImportFailedError';
  constructor(surface: ExportedSurface) {
    super(
      `the compositor could not import the ${surface.width}×${surface.height} ${fourccName(surface.fourcc)} dma-buf (zwp_linux_buffer_params_v1.failed): its renderer refused the layout; check offset, stride and modifier`,
      'ERR_WAYLAND_IMPORT_FAILED',
    );
  }
}

/** @internal What a window needs from its client. */
export interface WindowContext {
  connection: WaylandConnection;
  compositor: WlCompositor;
  wmBase: XdgWmBase;
  dmabuf: ZwpLinuxDmabufV1;
  formats: ReadonlyMap<number, readonly bigint[]>;
}

export class WaylandWindow implements Disposable {
  readonly #ctx: WindowContext;
  readonly surface: WlSurface;
  readonly #xdgSurface: XdgSurface;
  readonly #toplevel: XdgToplevel;
  readonly #buffers = new Map<ExportedSurface, ImportedBuffer>();
  /** Imports under way, so that concurrent presents of one surface import it once. */
  readonly #importing = new Map<ExportedSurface, Promise<ImportedBuffer>>();
  readonly #closeHandlers = new Set<() => void>();
  #size: { width: number; height: number };
  #closed = false;

  /** @internal Use WaylandClient.createWindow. */
  static async create(ctx: WindowContext, options: WindowOptions): Promise<WaylandWindow> {
    const win = new WaylandWindow(ctx, options);
    try {
      await win.#firstConfigure(options.signal);
    } catch (err) {
      win.close();
      throw err;
    }
    return win;
  }

  private constructor(ctx: WindowContext, { title, width, height, fullscreen }: WindowOptions) {
    this.#ctx = ctx;
    this.#size = { width, height };
    this.surface = ctx.compositor.createSurface();
    this.#xdgSurface = ctx.wmBase.getXdgSurface(this.surface);
    this.#toplevel = this.#xdgSurface.getToplevel();
    if (title !== undefined) this.#toplevel.setTitle(title);
    if (fullscreen) this.#toplevel.setFullscreen(null);
    this.#toplevel.on('configure', (w, h) => {
      if (w > 0 && h > 0) this.#size = { width: w, height: h };
    });
    this.#toplevel.on('close', () => {
      for (const handler of [...this.#closeHandlers]) handler();
    });
    this.#xdgSurface.on('configure', (serial) => this.#xdgSurface.ackConfigure(serial));
  }

  async #firstConfigure(signal?: AbortSignal): Promise<void> {
    const configured = this.#ctx.connection.wait<void>('the first xdg_surface.configure', signal, (resolve) => this.#xdgSurface.on('configure', () => resolve()));
    // The initial commit without a buffer asks for the first configure.
    this.surface.commit();
    await configured;
  }

  /** The size the compositor last configured (or the one asked for). */
  get size(): { width: number; height: number } {
    return { ...this.#size };
  }

  /** Calls `handler` when the compositor asks to close the window (xdg_toplevel.close). */
  onCloseRequest(handler: () => void): () => void {
    this.#closeHandlers.add(handler);
    return () => this.#closeHandlers.delete(handler);
  }

  /**
   * Shows `surface`: imports its dma-buf the first time, attaches, damages (`damage`, or the
   * whole surface), commits, and resolves once the compositor's frame callback says it was
   * drawn. Throws UnsupportedFormatError, before sending anything, for a format/modifier the
   * compositor does not offer.
   */
  async present(surface: ExportedSurface, { damage, signal }: PresentOptions = {}): Promise<void> {
    if (this.#closed) throw new InvalidArgumentError('present on a closed window: create another');
    const imported = this.#buffers.get(surface) ?? (await this.#importOnce(surface, signal));
    if (this.#closed) throw new InvalidArgumentError('the window was closed while its buffer was being imported');
    await this.presentBuffer(imported, { damage: damage ?? [{ x: 0, y: 0, width: surface.width, height: surface.height }], signal });
  }

  /**
   * Attaches a wl_buffer the caller made (a wl_shm buffer: ShmBuffers), damages `damage` (in
   * buffer pixels; required, since this window does not know the buffer's size), commits, and
   * resolves at the frame callback. The buffer counts as busy until the compositor releases it.
   */
  async presentBuffer(buffer: ImportedBuffer, { damage, signal }: PresentOptions & { damage: readonly Rect[] }): Promise<void> {
    if (this.#closed) throw new InvalidArgumentError('present on a closed window: create another');
    this.surface.attach(buffer.buffer, 0, 0);
    for (const r of damage) this.surface.damageBuffer(r.x, r.y, r.width, r.height);
    const frame = this.surface.frame();
    const drawn = this.#ctx.connection.wait<void>('the frame callback', signal, (resolve) => frame.on('done', () => resolve()));
    buffer.markAttached();
    this.surface.commit();
    await drawn;
  }

  /** True while the compositor holds `surface`'s buffer (between a commit and wl_buffer.release). */
  isBusy(surface: ExportedSurface): boolean {
    return this.#buffers.get(surface)?.busy ?? false;
  }

  /** Resolves once the compositor no longer holds `surface`'s buffer: its pages may be reused. */
  async released(surface: ExportedSurface, { signal }: { signal?: AbortSignal } = {}): Promise<void> {
    await this.#buffers.get(surface)?.released(this.#ctx.connection, signal);
  }

  /** Drops `surface`'s wl_buffer: now if free, else when the compositor releases it. */
  forget(surface: ExportedSurface): void {
    this.#buffers.get(surface)?.destroy();
    this.#buffers.delete(surface);
  }

  #importOnce(surface: ExportedSurface, signal?: AbortSignal): Promise<ImportedBuffer> {
    let pending = this.#importing.get(surface);
    if (!pending) {
      pending = this.#import(surface, signal).finally(() => this.#importing.delete(surface));
      this.#importing.set(surface, pending);
    }
    return pending;
  }

  async #import(surface: ExportedSurface, signal?: AbortSignal): Promise<ImportedBuffer> {
    const { formats, dmabuf, connection } = this.#ctx;
    const modifiers = formats.get(surface.fourcc);
    if (!modifiers?.includes(surface.modifier)) {
      const offered = [...formats].map(([f, mods]) => `${fourccName(f)} [${mods.map((m) => `0x${m.toString(16)}`).join(', ')}]`).join(', ');
      throw new UnsupportedFormatError(surface.fourcc, surface.modifier, offered || 'nothing');
    }
    // Neither weston 14 nor llvmpipe checks this (measured: such a buffer is imported and shown,
    // lines overlapping), so it is refused here, before anything is sent.
    const bpp = drmFormats.find((f) => f.fourcc === surface.fourcc)?.bytesPerPixel;
    const stride = surface.planes[0].stride;
    if (bpp !== undefined && stride < surface.width * bpp) {
      throw new InvalidArgumentError(`the surface's stride ${stride} is below its width ${surface.width} × ${bpp} bytes per pixel: lines would overlap; give the stride the guest uses`);
    }
    const params = dmabuf.createParams();
    surface.planes.forEach((plane, i) => {
      params.add(surface.dmabuf.fd, i, plane.offset, plane.stride, Number(surface.modifier >> 32n), Number(surface.modifier & 0xffff_ffffn));
    });
    let buffer: WlBuffer;
    try {
      buffer = await connection.wait<WlBuffer>('the dma-buf import', signal, (resolve, reject) => {
        params.on('created', (b) => resolve(b));
        params.on('failed', () => reject(new ImportFailedError(surface)));
        params.create(surface.width, surface.height, surface.fourcc, 0);
      });
    } finally {
      if (!connection.closed) params.destroy();
    }
    const imported = new ImportedBuffer(buffer);
    this.#buffers.set(surface, imported);
    return imported;
  }

  /** Destroys the window; buffers the compositor still holds are destroyed when it releases them. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ctx.connection.closed) return;
    this.#toplevel.destroy();
    this.#xdgSurface.destroy();
    this.surface.destroy();
    for (const b of this.#buffers.values()) b.destroy();
    this.#buffers.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
