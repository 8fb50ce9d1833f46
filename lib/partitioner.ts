/**
 * The partition a key lands in: Kafka's Java-client default partitioner (murmur2 of the key's
 * UTF-8 bytes, made positive, modulo the partition count), which kafkajs's DefaultPartitioner
 * also implements. The embedded log and the gateway's query routing use it, so both agree with
 * the real producer about where a symbol lives.
 */
const SEED = 0x9747b28c;
const M = 0x5bd1e995;

export function murmur2(key: string | Buffer): number {
  const data = typeof key === "string" ? Buffer.from(key, "utf8") : key;
  const length = data.length;
  let h = (SEED ^ length) | 0;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & 3;
  if (tail > 0) {
    if (tail === 3) h ^= data[whole + 2] << 16;
    if (tail >= 2) h ^= data[whole + 1] << 8;
    h ^= data[whole];
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

export function partitionForKey(key: string, partitions: number): number {
  return (murmur2(key) & 0x7fffffff) % partitions;
}
