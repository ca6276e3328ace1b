/**
 * The drawing canvas of the sketch mode: black strokes on white, pen and eraser, undo, clear. Its pixel size is
 * the generation size (the control image is the canvas, pixel for pixel); CSS scales it on screen. Pointer events
 * (mouse, pen, touch); `onStrokeEnd` fires when a stroke (or a clear / undo) changes the drawing.
 */
import { rgbaToRGB, type RGBImage } from '@fewstep/models';

export type Tool = 'pen' | 'eraser';

const MAX_UNDO = 40;

export class SketchPad {
  tool: Tool = 'pen';
  /** Pen width in pixels of a 512-pixel canvas (scaled to the canvas' size). */
  size = 6;
  private readonly ctx: CanvasRenderingContext2D;
  private undoStack: ImageData[] = [];
  private last: { x: number; y: number } | null = null;
  private drawing = false;
  private pointerId: number | null = null;
  /** Strokes drawn since the last clear (0: blank). */
  strokes = 0;

  constructor(
    readonly canvas: HTMLCanvasElement,
    private readonly onStrokeEnd: () => void,
  ) {
    const ctx = canvas.getContext('2d', { willReadFrequently: true, alpha: false });
    if (!ctx) throw new Error('no 2D canvas context');
    this.ctx = ctx;
    this.fillWhite();
    canvas.addEventListener('pointerdown', (e) => this.down(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    canvas.addEventListener('pointerup', (e) => this.up(e));
    canvas.addEventListener('pointercancel', (e) => this.up(e));
    canvas.style.touchAction = 'none';
  }

  get width(): number {
    return this.canvas.width;
  }
  get height(): number {
    return this.canvas.height;
  }

  /** Sets the pixel size; the drawing is cleared (and the undo history with it) when it changes. */
  resize(width: number, height: number): void {
    if (width === this.canvas.width && height === this.canvas.height) return;
    this.canvas.width = width;
    this.canvas.height = height;
    this.undoStack = [];
    this.strokes = 0;
    this.fillWhite();
  }

  private fillWhite(): void {
    this.ctx.globalCompositeOperation = 'source-over';
    this.ctx.fillStyle = '#ffffff';
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  private lineWidth(): number {
    const w = (this.size * Math.max(this.canvas.width, this.canvas.height)) / 512;
    return Math.max(1, this.tool === 'eraser' ? w * 3 : w);
  }

  private point(e: PointerEvent): { x: number; y: number } {
    const r = this.canvas.getBoundingClientRect();
    return { x: ((e.clientX - r.left) * this.canvas.width) / r.width, y: ((e.clientY - r.top) * this.canvas.height) / r.height };
  }

  private pushUndo(): void {
    this.undoStack.push(this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height));
    if (this.undoStack.length > MAX_UNDO) this.undoStack.shift();
  }

  private down(e: PointerEvent): void {
    if (e.button !== 0 || this.drawing) return;
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    this.pointerId = e.pointerId;
    this.drawing = true;
    this.pushUndo();
    const p = this.point(e);
    this.last = p;
    // A click alone leaves a dot.
    const c = this.ctx;
    c.fillStyle = this.tool === 'pen' ? '#000000' : '#ffffff';
    c.beginPath();
    c.arc(p.x, p.y, this.lineWidth() / 2, 0, Math.PI * 2);
    c.fill();
  }

  private move(e: PointerEvent): void {
    if (!this.drawing || e.pointerId !== this.pointerId || !this.last) return;
    const c = this.ctx;
    c.strokeStyle = this.tool === 'pen' ? '#000000' : '#ffffff';
    c.lineWidth = this.lineWidth();
    c.lineCap = 'round';
    c.lineJoin = 'round';
    c.beginPath();
    c.moveTo(this.last.x, this.last.y);
    const events = typeof e.getCoalescedEvents === 'function' ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      const p = this.point(ev);
      c.lineTo(p.x, p.y);
      this.last = p;
    }
    c.stroke();
  }

  private up(e: PointerEvent): void {
    if (!this.drawing || e.pointerId !== this.pointerId) return;
    this.drawing = false;
    this.pointerId = null;
    this.last = null;
    this.strokes++;
    this.onStrokeEnd();
  }

  undo(): boolean {
    const img = this.undoStack.pop();
    if (!img) return false;
    this.ctx.putImageData(img, 0, 0);
    this.strokes = Math.max(0, this.strokes - 1);
    this.onStrokeEnd();
    return true;
  }

  get canUndo(): boolean {
    return this.undoStack.length > 0;
  }

  clear(): void {
    this.pushUndo();
    this.fillWhite();
    this.strokes = 0;
    this.onStrokeEnd();
  }

  /** The drawing as an RGB image (what the ControlNet gets, before the optional inversion). */
  image(): RGBImage {
    const d = this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
    return rgbaToRGB(d.width, d.height, d.data);
  }
}
