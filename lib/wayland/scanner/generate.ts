// Protocol model → TypeScript: one module per protocol with each interface's table (what the
// wire layer marshals by), its enums, and a typed proxy class whose methods pass the
// table's opcode. The opcodes exist only here, generated, never written by hand.
import type { ArgModel, InterfaceModel, MessageModel, ProtocolModel } from './model.js';

export interface GenerateInput {
  protocol: ProtocolModel;
  /** Where the XML came from, for the header comment. */
  source: string;
  /** Interface name → the module (without extension) that defines it, for cross-protocol imports. */
  modules: ReadonlyMap<string, string>;
}

const pascal = (s: string): string => s.split('_').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
const camel = (s: string): string => {
  const p = pascal(s);
  return p.charAt(0).toLowerCase() + p.slice(1);
};
/** Identifiers that are reserved words in TypeScript get a trailing underscore. */
const RESERVED = new Set(['interface', 'class', 'function', 'default', 'new', 'delete', 'enum', 'export', 'import', 'in', 'this', 'var', 'let', 'const', 'return', 'switch', 'case', 'with', 'yield', 'package', 'private', 'public', 'static']);
const ident = (s: string): string => (RESERVED.has(s) ? `${s}_` : s);

/** Marks, in the `uses` set, that a module needs the ProxyClass type (an untyped new_id). */
const PROXY_CLASS = '#ProxyClass';

export const className = (iface: string): string => pascal(iface);

function argTable(a: ArgModel): string {
  const parts = [`name: '${a.name}'`, `type: '${a.type}'`];
  if (a.nullable) parts.push('nullable: true');
  if (a.interface !== undefined) parts.push(`interface: '${a.interface}'`);
  if (a.enum !== undefined) parts.push(`enum: '${a.enum}'`);
  return `{ ${parts.join(', ')} }`;
}

function messageTable(m: MessageModel): string {
  return `    { name: '${m.name}', since: ${m.since}, destructor: ${m.destructor}, args: [${m.args.map(argTable).join(', ')}] },`;
}

function eventArgType(a: ArgModel, uses: Set<string>): string {
  switch (a.type) {
    case 'int':
    case 'uint':
    case 'fixed':
    case 'fd':
      return 'number';
    case 'string':
      return a.nullable ? 'string | null' : 'string';
    case 'array':
      return 'Uint8Array';
    case 'object':
      if (a.interface === undefined) return 'WaylandObject | null';
      uses.add(a.interface);
      return `${className(a.interface)} | null`;
    case 'new_id':
      if (a.interface === undefined) return 'WaylandObject';
      uses.add(a.interface);
      return className(a.interface);
  }
}

function requestParam(a: ArgModel, uses: Set<string>): string {
  switch (a.type) {
    case 'int':
    case 'uint':
    case 'fixed':
    case 'fd':
      return `${ident(a.name)}: number`;
    case 'string':
      return `${ident(a.name)}: ${a.nullable ? 'string | null' : 'string'}`;
    case 'array':
      return `${ident(a.name)}: Uint8Array`;
    case 'object':
      if (a.interface === undefined) return `${ident(a.name)}: WaylandObject${a.nullable ? ' | null' : ''}`;
      uses.add(a.interface);
      return `${ident(a.name)}: ${className(a.interface)}${a.nullable ? ' | null' : ''}`;
    case 'new_id':
      throw new Error('new_id is not a parameter');
  }
}

function request(iface: InterfaceModel, m: MessageModel, opcode: number, uses: Set<string>): string {
  const newIds = m.args.filter((a) => a.type === 'new_id');
  if (newIds.length > 1) throw new Error(`${iface.name}.${m.name}: more than one new_id`);
  const newId = newIds[0];
  const params = m.args.filter((a) => a.type !== 'new_id').map((a) => requestParam(a, uses));
  const values = m.args.map((a) => (a.type === 'new_id' ? 'null' : ident(a.name)));
  const doc = `  /** ${iface.name}.${m.name}${m.since > 1 ? ` (since version ${m.since})` : ''}${m.destructor ? ': destroys this object' : ''}. */\n`;
  const name = camel(m.name);
  if (!newId) {
    return `${doc}  ${name}(${params.join(', ')}): void {\n    this.marshal(${opcode}, [${values.join(', ')}]);\n  }\n`;
  }
  if (newId.interface === undefined) {
    // wl_registry.bind: the interface and version travel on the wire before the id.
    uses.add(PROXY_CLASS);
    params.push('proxyClass: ProxyClass<P>', 'version: number');
    return `${doc}  ${name}<P extends WaylandObject>(${params.join(', ')}): P {\n    return this.marshalConstructor(${opcode}, [${values.join(', ')}], proxyClass, version);\n  }\n`;
  }
  uses.add(newId.interface);
  const cls = className(newId.interface);
  return `${doc}  ${name}(${params.join(', ')}): ${cls} {\n    return this.marshalConstructor(${opcode}, [${values.join(', ')}], ${cls});\n  }\n`;
}

function generateInterface(iface: InterfaceModel, uses: Set<string>): string {
  const cls = className(iface.name);
  const out: string[] = [];
  out.push(`export const ${iface.name}_interface: InterfaceTable = {`);
  out.push(`  name: '${iface.name}',`);
  out.push(`  version: ${iface.version},`);
  out.push('  requests: [');
  for (const m of iface.requests) out.push(messageTable(m));
  out.push('  ],');
  out.push('  events: [');
  for (const m of iface.events) out.push(messageTable(m));
  out.push('  ],');
  out.push('  enums: {');
  for (const e of iface.enums) {
    out.push(`    ${e.name}: { bitfield: ${e.bitfield}, entries: { ${e.entries.map((en) => `${/^\d/.test(en.name) ? `'${en.name}'` : en.name}: ${en.value}`).join(', ')} } },`);
  }
  out.push('  },');
  out.push('};\n');
  for (const e of iface.enums) {
    out.push(`export const ${cls}${pascal(e.name)} = {`);
    for (const en of e.entries) out.push(`  ${/^\d/.test(en.name) ? `'${en.name}'` : en.name}: ${en.value},`);
    out.push('} as const;\n');
  }
  out.push(`export type ${cls}Events = {`);
  for (const m of iface.events) {
    out.push(`  ${m.name}: [${m.args.map((a) => `${ident(a.name)}: ${eventArgType(a, uses)}`).join(', ')}];`);
  }
  out.push('};\n');
  out.push(`export class ${cls} extends WaylandObject<${cls}Events> {`);
  out.push(`  static override readonly interface: InterfaceTable = ${iface.name}_interface;\n`);
  iface.requests.forEach((m, opcode) => out.push(request(iface, m, opcode, uses)));
  out.push('}');
  out.push(`registerProxyClass(${cls});\n`);
  return out.join('\n');
}

/** The TypeScript module for one protocol. */
export function generateProtocol({ protocol, source, modules }: GenerateInput): string {
  const uses = new Set<string>();
  const body = protocol.interfaces.map((i) => generateInterface(i, uses)).join('\n');
  const own = new Set(protocol.interfaces.map((i) => i.name));
  const imports = new Map<string, string[]>();
  for (const name of [...uses].sort()) {
    if (own.has(name) || name === PROXY_CLASS) continue;
    const from = modules.get(name);
    if (from === undefined) throw new Error(`${protocol.name} refers to interface ${name}, which no input protocol defines`);
    imports.set(from, [...(imports.get(from) ?? []), className(name)]);
  }
  const header = [
    `// Generated by lib/wayland/scanner from ${source} (protocol "${protocol.name}").`,
    `// Do not edit: run \`npm run generate:wayland\`. test/host/wayland-scanner.test.ts checks it matches the XML.`,
    `import { WaylandObject, registerProxyClass${uses.has(PROXY_CLASS) ? ', type ProxyClass' : ''} } from '../client/proxy.js';`,
    `import type { InterfaceTable } from '../client/interface-table.js';`,
    ...[...imports].map(([from, names]) => `import { ${names.join(', ')} } from './${from}.js';`),
    '',
  ];
  return header.join('\n') + body;
}
