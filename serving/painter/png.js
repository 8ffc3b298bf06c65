// Grayscale PNG files of label ids, written and read without canvases (a canvas would
// colour-manage and smooth them). Compression is the browser's own zlib:
// CompressionStream("deflate") writes, and DecompressionStream("deflate") reads, the zlib
// format that PNG's IDAT data uses.

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const GRAY = 0;
const GRAY_ALPHA = 4;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (PNG's, ISO 3309) of some bytes. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

async function throughStream(bytes, stream) {
  const piped = new Blob([bytes]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(piped).arrayBuffer());
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** The bit depth a map of these ids needs: 8 when every id is at most 255, else 16. */
export function bitDepthFor(ids) {
  for (let i = 0; i < ids.length; i++) if (ids[i] > 255) return 16;
  return 8;
}

/**
 * A grayscale PNG (colour type 0, not interlaced, filter 0 on every row) of integer ids.
 * @param {Uint16Array|number[]} ids row-major, width * height values
 * @param {number} bitDepth 8, 16, or 0 to pick the smallest that holds every id
 * @returns {Promise<Uint8Array>}
 */
export async function encodeGrayPng(ids, width, height, bitDepth = 0) {
  if (ids.length !== width * height) {
    throw new Error(`encodeGrayPng: ${ids.length} ids for a ${width}x${height} map`);
  }
  const depth = bitDepth || bitDepthFor(ids);
  if (depth !== 8 && depth !== 16) throw new Error(`encodeGrayPng: bit depth ${depth}`);
  const bytesPerPixel = depth / 8;
  const stride = 1 + width * bytesPerPixel;
  const raw = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    let at = y * stride + 1; // raw[y * stride] stays 0: filter type None
    const row = y * width;
    for (let x = 0; x < width; x++) {
      const id = ids[row + x];
      if (depth === 16) {
        raw[at++] = (id >>> 8) & 0xff;
        raw[at++] = id & 0xff;
      } else {
        if (id > 255) throw new Error(`encodeGrayPng: id ${id} does not fit 8 bits`);
        raw[at++] = id;
      }
    }
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header[8] = depth;
  header[9] = GRAY; // compression 0, filter method 0, interlace 0 follow as zeros
  const idat = await throughStream(raw, new CompressionStream("deflate"));
  const parts = [Uint8Array.from(SIGNATURE), chunk("IHDR", header), chunk("IDAT", idat),
    chunk("IEND", new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** The IHDR fields of a PNG file, or null when the bytes are not a PNG. */
export function pngHeader(bytes) {
  if (bytes.length < 33 || SIGNATURE.some((value, i) => bytes[i] !== value)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (String.fromCharCode(...bytes.subarray(12, 16)) !== "IHDR") return null;
  return {
    width: view.getUint32(16), height: view.getUint32(20), bitDepth: bytes[24],
    colorType: bytes[25], interlace: bytes[28],
  };
}

/** Whether the PNG holds ids this module reads: grayscale (with or without alpha). */
export function isGrayPng(header) {
  return header !== null && (header.colorType === GRAY || header.colorType === GRAY_ALPHA);
}

function paeth(a, b, c) {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

/**
 * The ids of a grayscale PNG (colour type 0 at 1, 2, 4, 8 or 16 bits, or 4, gray + alpha,
 * at 8 or 16 bits, whose alpha is ignored): {width, height, bitDepth, ids: Uint16Array}.
 * Interlaced files are refused. Throws an Error whose message says what is wrong.
 */
export async function decodeGrayPng(bytes) {
  const header = pngHeader(bytes);
  if (header === null) throw new Error("not a PNG file");
  if (!isGrayPng(header)) throw new Error(`PNG colour type ${header.colorType} is not grayscale`);
  const { width, height, bitDepth, colorType } = header;
  const samples = colorType === GRAY_ALPHA ? 2 : 1;
  const allowed = colorType === GRAY ? [1, 2, 4, 8, 16] : [8, 16];
  if (!allowed.includes(bitDepth)) {
    throw new Error(`grayscale PNG with an invalid bit depth of ${bitDepth}`);
  }
  if (header.interlace !== 0) {
    throw new Error("interlaced PNGs are not supported: save the label map without interlacing");
  }
  if (width < 1 || height < 1 || width * height > 64 * 1024 * 1024) {
    throw new Error(`PNG size ${width}x${height} is not supported`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const idat = [];
  let offset = 8;
  while (offset + 12 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    const end = offset + 12 + length;
    if (end > bytes.length) throw new Error(`PNG chunk ${type} is cut short`);
    const stored = view.getUint32(offset + 8 + length);
    if (crc32(bytes.subarray(offset + 4, offset + 8 + length)) !== stored) {
      throw new Error(`PNG chunk ${type} has a wrong CRC (damaged file)`);
    }
    if (type === "IDAT") idat.push(bytes.subarray(offset + 8, offset + 8 + length));
    if (type === "IEND") break;
    offset = end;
  }
  if (!idat.length) throw new Error("PNG has no image data (IDAT)");
  let raw;
  try {
    raw = await throughStream(new Blob(idat), new DecompressionStream("deflate"));
  } catch (error) {
    throw new Error(`PNG image data cannot be decompressed (${error.message || error})`);
  }
  const bitsPerPixel = bitDepth * samples;
  const stride = Math.ceil((width * bitsPerPixel) / 8);
  const bpp = Math.max(1, bitsPerPixel / 8); // the filters' byte distance
  if (raw.length < (stride + 1) * height) {
    throw new Error("PNG image data is shorter than its size says");
  }
  const rows = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = rows.subarray(y * stride, (y + 1) * stride);
    const up = y ? rows.subarray((y - 1) * stride, y * stride) : null;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? out[i - bpp] : 0;
      const b = up ? up[i] : 0;
      const c = up && i >= bpp ? up[i - bpp] : 0;
      let value = src[i];
      if (filter === 1) value += a;
      else if (filter === 2) value += b;
      else if (filter === 3) value += (a + b) >> 1;
      else if (filter === 4) value += paeth(a, b, c);
      else if (filter !== 0) throw new Error(`PNG row ${y} has an unknown filter type ${filter}`);
      out[i] = value & 0xff;
    }
  }
  const ids = new Uint16Array(width * height);
  for (let y = 0; y < height; y++) {
    const row = rows.subarray(y * stride, (y + 1) * stride);
    for (let x = 0; x < width; x++) {
      let id;
      if (bitDepth === 16) id = (row[x * 2 * samples] << 8) | row[x * 2 * samples + 1];
      else if (bitDepth === 8) id = row[x * samples];
      else {
        const bit = x * bitDepth;
        id = (row[bit >> 3] >> (8 - bitDepth - (bit & 7))) & ((1 << bitDepth) - 1);
      }
      ids[y * width + x] = id;
    }
  }
  return { width, height, bitDepth, ids };
}

/** Bytes as base64 text (in slices: String.fromCharCode takes a bounded argument list). */
export function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

/** Base64 text (padded or not, standard or URL-safe alphabet) as bytes. */
export function fromBase64(text) {
  let clean = text.replace(/[\s]/g, "").replace(/-/g, "+").replace(/_/g, "/");
  while (clean.length % 4) clean += "=";
  const binary = atob(clean);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}
