/** Reading headers in tests, in the two shapes they come in. */

/** A header's values in Node's raw header array (`[name, value, name, value, ...]`), case-insensitively. */
export function rawHeaderValues(rawHeaders: readonly string[], name: string): string[] {
  const wanted = name.toLowerCase();
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === wanted) out.push(rawHeaders[i + 1]!);
  return out;
}

/** A header's values in `[name, value]` pairs (the tunnel's request and response heads), case-insensitively. */
export function headerValues(headers: ReadonlyArray<readonly [string, string]>, name: string): string[] {
  const wanted = name.toLowerCase();
  return headers.filter(([n]) => n.toLowerCase() === wanted).map(([, v]) => v);
}
