// The protocol XML as data: what wayland-scanner reads from it, and nothing of its prose.
import { parseXml, type XmlElement } from './xml.js';

export type ArgType = 'int' | 'uint' | 'fixed' | 'string' | 'object' | 'new_id' | 'array' | 'fd';
const ARG_TYPES: readonly string[] = ['int', 'uint', 'fixed', 'string', 'object', 'new_id', 'array', 'fd'];

export interface ArgModel {
  name: string;
  type: ArgType;
  interface?: string;
  nullable: boolean;
  enum?: string;
}

export interface MessageModel {
  name: string;
  since: number;
  destructor: boolean;
  args: ArgModel[];
}

export interface EnumModel {
  name: string;
  bitfield: boolean;
  entries: { name: string; value: number }[];
}

export interface InterfaceModel {
  name: string;
  version: number;
  requests: MessageModel[];
  events: MessageModel[];
  enums: EnumModel[];
}

export interface ProtocolModel {
  name: string;
  interfaces: InterfaceModel[];
}

function required(el: XmlElement, attr: string, where: string): string {
  const v = el.attributes[attr];
  if (v === undefined) throw new Error(`${where}: <${el.name}> has no ${attr} attribute`);
  return v;
}

function message(el: XmlElement, where: string): MessageModel {
  const name = required(el, 'name', where);
  const args = el.children
    .filter((c) => c.name === 'arg')
    .map((a): ArgModel => {
      const type = required(a, 'type', `${where}.${name}`);
      if (!ARG_TYPES.includes(type)) throw new Error(`${where}.${name}: unknown argument type ${type}`);
      const arg: ArgModel = { name: required(a, 'name', `${where}.${name}`), type: type as ArgType, nullable: a.attributes['allow-null'] === 'true' };
      if (a.attributes.interface !== undefined) arg.interface = a.attributes.interface;
      if (a.attributes.enum !== undefined) arg.enum = a.attributes.enum;
      return arg;
    });
  return { name, since: Number(el.attributes.since ?? '1'), destructor: el.attributes.type === 'destructor', args };
}

/** Reads a protocol XML document into its model. */
export function readProtocol(xml: string, what = 'protocol XML'): ProtocolModel {
  const root = parseXml(xml, what);
  if (root.name !== 'protocol') throw new Error(`${what}: the root element is <${root.name}>, not <protocol>`);
  const interfaces = root.children
    .filter((c) => c.name === 'interface')
    .map((i): InterfaceModel => {
      const name = required(i, 'name', what);
      return {
        name,
        version: Number(required(i, 'version', name)),
        requests: i.children.filter((c) => c.name === 'request').map((m) => message(m, name)),
        events: i.children.filter((c) => c.name === 'event').map((m) => message(m, name)),
        enums: i.children
          .filter((c) => c.name === 'enum')
          .map((e) => ({
            name: required(e, 'name', name),
            bitfield: e.attributes.bitfield === 'true',
            entries: e.children
              .filter((c) => c.name === 'entry')
              .map((en) => ({ name: required(en, 'name', name), value: Number(required(en, 'value', name)) })),
          })),
      };
    });
  return { name: required(root, 'name', what), interfaces };
}
