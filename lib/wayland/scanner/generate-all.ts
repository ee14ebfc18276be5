// Every protocol in PROTOCOL_SOURCES, generated with cross-protocol imports resolved.
import { existsSync, readFileSync } from 'node:fs';
import { generateProtocol } from './generate.js';
import { readProtocol, type ProtocolModel } from './model.js';
import { PROTOCOL_SOURCES } from './protocols.js';

export function generateAll(): { module: string; text: string }[] {
  const models: { module: string; xml: string; protocol: ProtocolModel }[] = PROTOCOL_SOURCES.map(({ module, xml }) => {
    if (!existsSync(xml)) throw new Error(`${xml} is missing: run scripts/setup-host.sh (it installs libwayland-dev and wayland-protocols from bookworm-backports)`);
    return { module, xml, protocol: readProtocol(readFileSync(xml, 'utf8'), xml) };
  });
  const modules = new Map<string, string>();
  for (const { module, protocol } of models) for (const i of protocol.interfaces) modules.set(i.name, module);
  return models.map(({ module, xml, protocol }) => ({ module, text: generateProtocol({ protocol, source: xml, modules }) }));
}
