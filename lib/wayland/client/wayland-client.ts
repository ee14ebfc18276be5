// WaylandClient: a connection with the globals a guest-surface viewer needs bound, the
// compositor's dma-buf formats known, and windows on demand.
import { NotSupportedError } from '../../core/errors.js';
import { ZwpLinuxDmabufV1 } from '../protocol/linux-dmabuf-v1.js';
import { WlCompositor, WlShm, type WlRegistry } from '../protocol/wayland.js';
import { XdgWmBase } from '../protocol/xdg-shell.js';
import { WaylandConnection, type WaylandConnectOptions } from './connection.js';
import { formatsFromEvents, formatsFromFeedback } from './dmabuf-formats.js';
import type { ProxyClass, WaylandObject } from './proxy.js';
import { WaylandWindow, type WindowOptions } from './window.js';

interface Global {
  name: number;
  version: number;
}

export class WaylandClient implements Disposable {
  readonly connection: WaylandConnection;
  readonly compositor: WlCompositor;
  readonly wmBase: XdgWmBase;
  readonly dmabuf: ZwpLinuxDmabufV1;
  /** wl_shm, when offered (for copy-based comparisons). */
  readonly shm: WlShm | undefined;
  /** fourcc → modifiers the compositor imports. */
  readonly dmabufFormats: ReadonlyMap<number, readonly bigint[]>;
  readonly #windows = new Set<WaylandWindow>();

  /** Connects to `name` (default $WAYLAND_DISPLAY under $XDG_RUNTIME_DIR, or an absolute path). */
  static async connect(name?: string, { signal }: WaylandConnectOptions = {}): Promise<WaylandClient> {
    return WaylandClient.over(await WaylandConnection.connect(name, { signal }), { signal });
  }

  /** Sets up a client over an existing connection (which it owns from now on, and closes on failure). */
  static async over(connection: WaylandConnection, { signal }: WaylandConnectOptions = {}): Promise<WaylandClient> {
    try {
      const registry = connection.display.getRegistry();
      const globals = new Map<string, Global>();
      registry.on('global', (n, iface, version) => globals.set(iface, { name: n, version }));
      await connection.roundtrip({ signal });
      const compositor = bind(registry, globals, WlCompositor, 4, 4);
      const wmBase = bind(registry, globals, XdgWmBase, 1, 5);
      wmBase.on('ping', (serial) => wmBase.pong(serial));
      const dmabuf = bind(registry, globals, ZwpLinuxDmabufV1, 3, ZwpLinuxDmabufV1.interface.version);
      const shm = globals.has('wl_shm') ? bind(registry, globals, WlShm, 1, 1) : undefined;
      // v3 sends its modifier events right after bind; v4+ answers get_default_feedback.
      const formats = dmabuf.version >= 4 ? await formatsFromFeedback(connection, dmabuf, signal) : await formatsFromEvents(connection, dmabuf, signal);
      return new WaylandClient(connection, compositor, wmBase, dmabuf, shm, formats);
    } catch (err) {
      connection.close();
      throw err;
    }
  }

  private constructor(connection: WaylandConnection, compositor: WlCompositor, wmBase: XdgWmBase, dmabuf: ZwpLinuxDmabufV1, shm: WlShm | undefined, formats: Map<number, bigint[]>) {
    this.connection = connection;
    this.compositor = compositor;
    this.wmBase = wmBase;
    this.dmabuf = dmabuf;
    this.shm = shm;
    this.dmabufFormats = formats;
  }

  /** The zwp_linux_dmabuf_v1 version in use: the highest both sides know. */
  get dmabufVersion(): number {
    return this.dmabuf.version;
  }

  /** A toplevel (fullscreen when asked), configured and ready for present(). */
  async createWindow(options: WindowOptions): Promise<WaylandWindow> {
    const win = await WaylandWindow.create(
      { connection: this.connection, compositor: this.compositor, wmBase: this.wmBase, dmabuf: this.dmabuf, formats: this.dmabufFormats },
      options,
    );
    this.#windows.add(win);
    return win;
  }

  /** Resolves once the compositor has handled everything sent so far. */
  roundtrip(options: WaylandConnectOptions = {}): Promise<void> {
    return this.connection.roundtrip(options);
  }

  /** Closes every window and the connection; pending calls reject with ClosedError. */
  close(): void {
    for (const win of this.#windows) win.close();
    this.#windows.clear();
    this.connection.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function bind<P extends WaylandObject>(registry: WlRegistry, globals: Map<string, Global>, proxyClass: ProxyClass<P>, minVersion: number, maxVersion: number): P {
  const name = proxyClass.interface.name;
  const global = globals.get(name);
  if (!global) throw new NotSupportedError(`the compositor does not offer ${name}, which guest-dmabuf needs to show dma-bufs`);
  if (global.version < minVersion) throw new NotSupportedError(`the compositor offers ${name} version ${global.version}; guest-dmabuf needs ${minVersion} or later`);
  return registry.bind(global.name, proxyClass, Math.min(global.version, maxVersion, proxyClass.interface.version));
}
