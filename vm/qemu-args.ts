// Pieces of the QEMU command line that need quoting rules of their own.

/**
 * A QEMU option value: commas separate key=value pairs, so a comma inside a value is written
 * twice (QEMU's own escaping, as in `path=a,,b` for the path `a,b`).
 */
export function qemuOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** `-virtfs` arguments sharing host directory `path` as 9p tag `tag`. */
export function virtfsArgs(tag: string, path: string, readonly: boolean): string[] {
  return [
    '-virtfs',
    `local,path=${qemuOptionValue(path)},mount_tag=${qemuOptionValue(tag)},security_model=none,multidevs=remap${readonly ? ',readonly=on' : ''}`,
  ];
}
