/**
 * Progress of a replay: a redrawn bar with rate and ETA on a terminal, a plain line every few
 * seconds otherwise (a log file or CI would otherwise fill with carriage returns). Both go to
 * stderr, so stdout carries only the report.
 */

export interface ProgressSnapshot {
  label: string;
  /** Rows resolved: accepted or rejected. */
  done: number;
  total: number;
  rejected: number;
  /** Rows per second, recent; null until there is a measurement. */
  rate: number | null;
}

/** `0:04`, `12:03`, `1:02:03`; `--:--` when unknown. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** 5105 -> `5,105`. */
export function formatCount(n: number): string {
  return Math.round(n)
    .toString()
    .replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** `812 rows/s`, `12.3k rows/s`, `0.5 rows/s`. */
export function formatRate(rowsPerSecond: number | null): string {
  if (rowsPerSecond === null || !Number.isFinite(rowsPerSecond)) return "- rows/s";
  if (rowsPerSecond >= 10_000) return `${(rowsPerSecond / 1000).toFixed(0)}k rows/s`;
  if (rowsPerSecond >= 1000) return `${(rowsPerSecond / 1000).toFixed(1)}k rows/s`;
  if (rowsPerSecond >= 10) return `${rowsPerSecond.toFixed(0)} rows/s`;
  return `${rowsPerSecond.toFixed(1)} rows/s`;
}

/** A bar of `width` cells, filled in eighths of a cell. */
export function progressBar(fraction: number, width: number): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const eighths = Math.round(f * width * 8);
  const full = Math.floor(eighths / 8);
  const partial = eighths % 8;
  const partials = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
  const filled = "█".repeat(full) + (full < width ? partials[partial] : "");
  return filled + " ".repeat(Math.max(0, width - [...filled].length));
}

export function etaSeconds(s: ProgressSnapshot): number | null {
  if (s.done >= s.total) return 0;
  if (s.rate === null || s.rate <= 0) return null;
  return (s.total - s.done) / s.rate;
}

const percent = (s: ProgressSnapshot) => (s.total === 0 ? 100 : (100 * s.done) / s.total);

/** One line for logs: `SPX: 2,048/5,105 rows (40.1%), 812 rows/s, ETA 0:04, 0 rejected`. */
export function formatProgressLine(s: ProgressSnapshot): string {
  return (
    `${s.label}: ${formatCount(s.done)}/${formatCount(s.total)} rows (${percent(s).toFixed(1)}%), ` +
    `${formatRate(s.rate)}, ETA ${formatDuration(etaSeconds(s))}, ${formatCount(s.rejected)} rejected`
  );
}

/** The terminal line, fitted to `columns`: the bar takes what the figures leave. */
export function formatProgressBar(s: ProgressSnapshot, columns: number): string {
  const figures =
    ` ${formatCount(s.done)}/${formatCount(s.total)} ${percent(s).toFixed(1).padStart(5)}%` +
    `  ${formatRate(s.rate)}  ETA ${formatDuration(etaSeconds(s))}` +
    (s.rejected > 0 ? `  ${formatCount(s.rejected)} rejected` : "");
  const room = columns - 1 - s.label.length - 1 - figures.length;
  if (room < 5) return `${s.label}${figures}`.slice(0, Math.max(0, columns - 1));
  return `${s.label} ${progressBar(s.total === 0 ? 1 : s.done / s.total, Math.min(40, room))}${figures}`;
}

/** Rows per second over the last `windowMs`, so the ETA follows the current pace, not the whole run's. */
export class RateMeter {
  private readonly samples: { t: number; n: number }[] = [];

  constructor(private readonly windowMs = 5000) {}

  record(nowMs: number, count: number): void {
    this.samples.push({ t: nowMs, n: count });
    while (this.samples.length > 2 && nowMs - this.samples[1].t >= this.windowMs) this.samples.shift();
  }

  rate(): number | null {
    if (this.samples.length < 2) return null;
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    const ms = last.t - first.t;
    return ms > 0 ? ((last.n - first.n) * 1000) / ms : null;
  }
}

export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Draws the bar (TTY) or prints lines (otherwise); `log` prints a message without tearing the bar. */
export class ProgressReporter {
  private readonly meter = new RateMeter();
  private timer: NodeJS.Timeout | null = null;
  private drawn = false;
  private done = 0;
  private rejected = 0;
  private total = 0;

  constructor(
    private readonly out: ProgressOutput,
    private readonly label: string,
    private readonly options: { intervalMs?: number; now?: () => number } = {},
  ) {}

  private get tty(): boolean {
    return this.out.isTTY === true;
  }

  private now(): number {
    return (this.options.now ?? performance.now.bind(performance))();
  }

  snapshot(): ProgressSnapshot {
    return {
      label: this.label,
      done: this.done,
      total: this.total,
      rejected: this.rejected,
      rate: this.meter.rate(),
    };
  }

  start(total: number, done: number, rejected: number): void {
    this.total = total;
    this.done = done;
    this.rejected = rejected;
    this.meter.record(this.now(), done);
    const interval = this.tty ? 200 : (this.options.intervalMs ?? 2000);
    this.timer = setInterval(() => this.render(), interval);
    this.timer.unref();
    if (this.tty) this.render();
  }

  update(done: number, rejected: number): void {
    this.done = done;
    this.rejected = rejected;
    this.meter.record(this.now(), done);
  }

  log(line: string): void {
    this.clear();
    this.out.write(`${line}\n`);
    if (this.timer !== null && this.tty) this.render();
  }

  /** Stops redrawing and leaves a final plain line. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.clear();
    this.out.write(`${formatProgressLine(this.snapshot())}\n`);
  }

  private render(): void {
    if (this.tty) {
      // A pseudo-terminal without a size reports 0 columns.
      const line = formatProgressBar(this.snapshot(), this.out.columns || 80);
      this.out.write(`\r${line}\x1b[K`);
      this.drawn = true;
    } else {
      this.out.write(`${formatProgressLine(this.snapshot())}\n`);
    }
  }

  private clear(): void {
    if (this.drawn) this.out.write("\r\x1b[K");
    this.drawn = false;
  }
}
