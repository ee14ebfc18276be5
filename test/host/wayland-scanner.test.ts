// The checked-in protocol modules are exactly what the scanner makes from the installed XML
// (setup-host.sh installs it), and the tables carry what the XML says.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../vm/paths.js';
import { generateAll } from '../../lib/wayland/scanner/generate-all.js';
import { readProtocol } from '../../lib/wayland/scanner/model.js';
import { parseXml } from '../../lib/wayland/scanner/xml.js';
import { wl_display_interface, wl_registry_interface, wl_surface_interface } from '../../lib/wayland/protocol/wayland.js';
import { zwp_linux_buffer_params_v1_interface, zwp_linux_dmabuf_v1_interface } from '../../lib/wayland/protocol/linux-dmabuf-v1.js';

test('lib/wayland/protocol/*.ts match the installed protocol XML (npm run generate:wayland)', (t) => {
  for (const { module, text } of generateAll()) {
    const file = join(PROJECT_ROOT, 'lib', 'wayland', 'protocol', `${module}.ts`);
    t.true(readFileSync(file, 'utf8') === text, `${file} is stale: run npm run generate:wayland`);
  }
});

test('tables carry opcodes by position, since, destructors, nullability, interfaces and enums', (t) => {
  t.is(wl_display_interface.requests[0]!.name, 'sync');
  t.is(wl_display_interface.events[0]!.name, 'error');
  t.deepEqual(wl_registry_interface.requests[0]!.args[1], { name: 'id', type: 'new_id' }, 'bind has an untyped new_id');
  const attach = wl_surface_interface.requests.findIndex((r) => r.name === 'attach');
  t.is(attach, 1);
  t.true(wl_surface_interface.requests[attach]!.args[0]!.nullable);
  t.true(wl_surface_interface.requests[0]!.destructor);
  t.is(zwp_linux_dmabuf_v1_interface.requests.find((r) => r.name === 'get_default_feedback')!.since, 4);
  t.is(zwp_linux_buffer_params_v1_interface.enums.error!.entries.invalid_format, 4);
  t.is(zwp_linux_buffer_params_v1_interface.enums.flags!.bitfield, true);
});

test('the XML reader handles comments, CDATA, entities and self-closing tags, and names what it cannot read', (t) => {
  const root = parseXml('<?xml version="1.0"?><!-- c --><a x="1 &amp; 2"><b/><c y=\'z\'>t &lt; <![CDATA[<raw>]]></c></a>');
  t.is(root.attributes.x, '1 & 2');
  t.is(root.children.length, 2);
  t.is(root.children[1]!.text, 't < <raw>');
  t.throws(() => parseXml('<a><b></a>', 'x.xml'), { message: /x\.xml: end tag <\/a> does not match <b>/ });
  t.throws(() => parseXml('<a>', 'x.xml'), { message: /<a> is never closed/ });
  t.throws(() => readProtocol('<protocol name="p"><interface name="i" version="1"><request name="r"><arg name="a" type="double"/></request></interface></protocol>'), { message: /unknown argument type double/ });
});
