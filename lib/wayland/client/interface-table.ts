// The shape of a generated interface table (lib/wayland/protocol/*.ts): libwayland's
// wl_interface, as data.
import type { ArgSignature } from '../wire/signature.js';

export interface ArgTable extends ArgSignature {
  readonly name: string;
  /** The XML's enum attribute ("error", "wl_shm.format"). */
  readonly enum?: string;
}

export interface MessageTable {
  readonly name: string;
  readonly since: number;
  readonly destructor: boolean;
  readonly args: readonly ArgTable[];
}

export interface EnumTable {
  readonly bitfield: boolean;
  readonly entries: Readonly<Record<string, number>>;
}

export interface InterfaceTable {
  readonly name: string;
  readonly version: number;
  readonly requests: readonly MessageTable[];
  readonly events: readonly MessageTable[];
  readonly enums: Readonly<Record<string, EnumTable>>;
}

/** The name of `value` in `table`'s enum `enumName`, when there is one. */
export function enumEntryName(table: InterfaceTable, enumName: string, value: number): string | undefined {
  const entries = table.enums[enumName]?.entries;
  if (!entries) return undefined;
  return Object.entries(entries).find(([, v]) => v === value)?.[0];
}
