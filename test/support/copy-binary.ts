/**
 * Rows in COPY's binary format for the SQL clients' `copyFrom`: a string goes as text (its UTF-8
 * bytes), a number as an int8, null as NULL. Enough for tables of text and bigint columns.
 */
export function copyBinary(rows: readonly (readonly (string | number | null)[])[]): Buffer {
  const parts: Buffer[] = [
    // Signature, flags, header extension length.
    Buffer.from([0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]),
  ];
  for (const row of rows) {
    const count = Buffer.alloc(2);
    count.writeInt16BE(row.length);
    parts.push(count);
    for (const value of row) {
      const length = Buffer.alloc(4);
      if (value === null) {
        length.writeInt32BE(-1);
        parts.push(length);
        continue;
      }
      const bytes = typeof value === "string" ? Buffer.from(value) : int8(value);
      length.writeInt32BE(bytes.length);
      parts.push(length, bytes);
    }
  }
  const trailer = Buffer.alloc(2);
  trailer.writeInt16BE(-1);
  parts.push(trailer);
  return Buffer.concat(parts);
}

function int8(value: number): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeBigInt64BE(BigInt(value));
  return bytes;
}
