// The protocols the client speaks and where setup-host.sh's packages put their XML
// (libwayland-dev and wayland-protocols from bookworm-backports).
export interface ProtocolSource {
  /** The generated module's name in lib/wayland/protocol/. */
  module: string;
  xml: string;
}

export const PROTOCOL_SOURCES: readonly ProtocolSource[] = [
  { module: 'wayland', xml: '/usr/share/wayland/wayland.xml' },
  { module: 'linux-dmabuf-v1', xml: '/usr/share/wayland-protocols/stable/linux-dmabuf/linux-dmabuf-v1.xml' },
  { module: 'xdg-shell', xml: '/usr/share/wayland-protocols/stable/xdg-shell/xdg-shell.xml' },
  { module: 'presentation-time', xml: '/usr/share/wayland-protocols/stable/presentation-time/presentation-time.xml' },
  { module: 'viewporter', xml: '/usr/share/wayland-protocols/stable/viewporter/viewporter.xml' },
];
