// WaylandObject: libwayland's wl_proxy. One per protocol object; requests go out through its
// connection with the opcode the generated subclass passes; events come back to handlers
// registered on this object alone (per-object dispatch).
import type { InterfaceTable } from './interface-table.js';
import type { WaylandConnection } from './connection.js';

/** A request argument as a typed proxy gives it; the connection turns objects into ids. */
export type RequestValue = number | string | null | Uint8Array | WaylandObject;

export type EventMap = Record<string, unknown[]>;

export interface ProxyClass<P extends WaylandObject = WaylandObject> {
  new (connection: WaylandConnection, id: number, version: number): P;
  readonly interface: InterfaceTable;
}

type Handler = (...args: unknown[]) => void;

export class WaylandObject<E extends EventMap = EventMap> {
  static readonly interface: InterfaceTable = { name: 'wl_object', version: 1, requests: [], events: [], enums: {} };
  readonly connection: WaylandConnection;
  readonly id: number;
  readonly version: number;
  #destroyed = false;
  readonly #handlers = new Map<string, Set<Handler>>();

  /** @internal Made by WaylandConnection (a constructor request, bind, or a server-created new_id). */
  constructor(connection: WaylandConnection, id: number, version: number) {
    this.connection = connection;
    this.id = id;
    this.version = version;
  }

  get interface(): InterfaceTable {
    return (this.constructor as ProxyClass).interface;
  }

  /** True once a destructor request was sent or a destructor event received. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Calls `handler` for each `event` this object receives. Returns a function that removes it. */
  on<K extends keyof E & string>(event: K, handler: (...args: E[K]) => void): () => void {
    if (!this.interface.events.some((e) => e.name === event)) throw new TypeError(`${this.interface.name} has no event ${event}`);
    let set = this.#handlers.get(event);
    if (!set) this.#handlers.set(event, (set = new Set()));
    set.add(handler as unknown as Handler);
    return () => set.delete(handler as unknown as Handler);
  }

  toString(): string {
    return `${this.interface.name}@${this.id}`;
  }

  protected marshal(opcode: number, values: RequestValue[]): void {
    this.connection.request(this, opcode, values, null);
  }

  protected marshalConstructor<P extends WaylandObject>(opcode: number, values: RequestValue[], proxyClass: ProxyClass<P>, version = this.version): P {
    const created = this.connection.createObject(proxyClass, version);
    this.connection.request(this, opcode, values, created);
    return created;
  }

  /** @internal The connection marks the object destroyed when its destructor goes out or comes in. */
  markDestroyed(): void {
    this.#destroyed = true;
  }

  /** @internal Runs the handlers of event `name`; returns whether there was one. */
  dispatch(name: string, args: unknown[]): boolean {
    const set = this.#handlers.get(name);
    if (!set || set.size === 0) return false;
    for (const handler of [...set]) handler(...args);
    return true;
  }
}

const classes = new Map<string, ProxyClass>();

/** Called by each generated module for its proxy classes: server-created objects need them. */
export function registerProxyClass(proxyClass: ProxyClass): void {
  classes.set(proxyClass.interface.name, proxyClass);
}

export function proxyClassFor(interfaceName: string): ProxyClass | undefined {
  return classes.get(interfaceName);
}
