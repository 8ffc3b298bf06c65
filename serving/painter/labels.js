// The label map: integer class ids, one per pixel, edited only here. Nothing is ever
// drawn on a canvas and read back, so no edge can get an id in between two classes.

/**
 * The pixel offsets (dx, dy) of a round brush `size` pixels across: centred on the pixel
 * for odd sizes, on its lower right corner for even ones.
 */
export function discOffsets(size) {
  const offsets = [];
  const radius = (size - 1) / 2;
  const low = -Math.floor(radius);
  const high = Math.ceil(radius);
  // r^2 + r/2 rounds the disc the way it looks drawn (no single-pixel tips at the axes).
  const limit = radius * radius + radius / 2 + 1e-9;
  const centre = radius - Math.floor(radius); // 0.5 for even sizes: between pixels
  for (let dy = low; dy <= high; dy++) {
    for (let dx = low; dx <= high; dx++) {
      const ex = dx - centre;
      const ey = dy - centre;
      if (ex * ex + ey * ey <= limit) offsets.push(dx, dy);
    }
  }
  return Int16Array.from(offsets);
}

/** The integer points of the segment (x0, y0)-(x1, y1), ends included (Bresenham). */
export function linePoints(x0, y0, x1, y1) {
  const points = [];
  const dx = Math.abs(x1 - x0);
  const dy = -Math.abs(y1 - y0);
  const sx = x0 < x1 ? 1 : -1;
  const sy = y0 < y1 ? 1 : -1;
  let error = dx + dy;
  let x = x0;
  let y = y0;
  for (;;) {
    points.push(x, y);
    if (x === x1 && y === y1) return points;
    const twice = 2 * error;
    if (twice >= dy) {
      error += dy;
      x += sx;
    }
    if (twice <= dx) {
      error += dx;
      y += sy;
    }
  }
}

export class LabelMap {
  constructor(width, height, fill = 0) {
    this.width = width;
    this.height = height;
    this.ids = new Uint16Array(width * height).fill(fill);
  }

  inside(x, y) {
    return x >= 0 && y >= 0 && x < this.width && y < this.height;
  }

  get(x, y) {
    return this.inside(x, y) ? this.ids[y * this.width + x] : -1;
  }

  /** Stamp the brush `offsets` (discOffsets) at (x, y); parts outside are clipped. */
  stamp(x, y, offsets, id) {
    const { width, height, ids } = this;
    for (let i = 0; i < offsets.length; i += 2) {
      const px = x + offsets[i];
      const py = y + offsets[i + 1];
      if (px >= 0 && py >= 0 && px < width && py < height) ids[py * width + px] = id;
    }
  }

  /** A stroke segment: the brush stamped at every pixel between the two points. */
  line(x0, y0, x1, y1, offsets, id) {
    const points = linePoints(x0, y0, x1, y1);
    for (let i = 0; i < points.length; i += 2) this.stamp(points[i], points[i + 1], offsets, id);
  }

  /**
   * Flood fill: the 4-connected region of (x, y)'s id becomes `id`. Returns the number of
   * pixels changed (0 when the point is outside or already has the id).
   */
  fill(x, y, id) {
    const { width, height, ids } = this;
    if (!this.inside(x, y)) return 0;
    const target = ids[y * width + x];
    if (target === id) return 0;
    let changed = 0;
    const stack = [x, y];
    while (stack.length) {
      const sy = stack.pop();
      const sx = stack.pop();
      const row = sy * width;
      if (ids[row + sx] !== target) continue;
      let left = sx;
      while (left > 0 && ids[row + left - 1] === target) left--;
      let right = sx;
      while (right < width - 1 && ids[row + right + 1] === target) right++;
      for (let px = left; px <= right; px++) ids[row + px] = id;
      changed += right - left + 1;
      for (const ny of [sy - 1, sy + 1]) {
        if (ny < 0 || ny >= height) continue;
        const other = ny * width;
        let open = false; // push one seed per run of the target id on the next row
        for (let px = left; px <= right; px++) {
          const match = ids[other + px] === target;
          if (match && !open) stack.push(px, ny);
          open = match;
        }
      }
    }
    return changed;
  }

  /** Every pixel becomes `id`. */
  clear(id) {
    this.ids.fill(id);
  }

  snapshot() {
    return this.ids.slice();
  }

  restore(ids) {
    this.ids.set(ids);
  }

  equals(ids) {
    const own = this.ids;
    if (own.length !== ids.length) return false;
    for (let i = 0; i < own.length; i++) if (own[i] !== ids[i]) return false;
    return true;
  }

  /** The distinct ids present, sorted. */
  presentIds() {
    const seen = new Set(this.ids);
    return [...seen].sort((a, b) => a - b);
  }
}

/** Undo and redo: whole-map snapshots, at most `maxBytes` of them kept. */
export class History {
  constructor(maxBytes = 64 * 1024 * 1024) {
    this.maxBytes = maxBytes;
    this.undoStack = [];
    this.redoStack = [];
  }

  /** Keep the map as it was before an edit (call before editing). */
  push(snapshot) {
    this.undoStack.push(snapshot);
    this.redoStack = [];
    const limit = Math.max(1, Math.floor(this.maxBytes / Math.max(1, snapshot.byteLength)));
    if (this.undoStack.length > limit) this.undoStack.splice(0, this.undoStack.length - limit);
  }

  /** Forget the last push (an edit that changed nothing). */
  drop() {
    this.undoStack.pop();
  }

  undo(map) {
    if (!this.undoStack.length) return false;
    this.redoStack.push(map.snapshot());
    map.restore(this.undoStack.pop());
    return true;
  }

  redo(map) {
    if (!this.redoStack.length) return false;
    this.undoStack.push(map.snapshot());
    map.restore(this.redoStack.pop());
    return true;
  }

  get canUndo() {
    return this.undoStack.length > 0;
  }

  get canRedo() {
    return this.redoStack.length > 0;
  }

  reset() {
    this.undoStack = [];
    this.redoStack = [];
  }
}
