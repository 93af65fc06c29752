// Fixed-width ASCII fields, as firmware tables hold them (ACPI's signatures and OEM IDs, the MP table's strings).

/** The character codes of `text`, which must fill a `length`-character field exactly (`what`: the table, for errors). */
export function asciiField(text: string, length: number, what: string): number[] {
  if (text.length !== length) throw new RangeError(`${what}: '${text}' must be exactly ${length} characters`);
  const codes: number[] = [];
  for (let i = 0; i < length; i++) codes.push(text.charCodeAt(i));
  return codes;
}
