import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { ROOT } from "../../support/stack";

/** Debian's Chromium (apt-get install chromium); CHROMIUM_PATH points elsewhere. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const SCREENSHOTS = path.join(ROOT, "test-results/dashboard");

/**
 * Whether the browser tests can run. Without Chromium they are skipped on a developer's machine,
 * but under CI=true they fail: a CI run that skipped them would report a dashboard it never saw.
 */
export function chromiumAvailable(): boolean {
  if (fs.existsSync(CHROMIUM_PATH)) return true;
  const message = `the dashboard's browser tests need Chromium at ${CHROMIUM_PATH}: apt-get install chromium (npm run stack:up does it as root), or set CHROMIUM_PATH`;
  if (process.env.CI === "true" || process.env.CI === "1") throw new Error(message);
  console.warn(`SKIPPED: ${message}`);
  return false;
}

/** A page of a headless Chromium with a fresh profile, and every console error and page error it logs. */
export class BrowserSession {
  readonly errors: string[] = [];
  /** HTTP answers of 400 and above: Chromium logs each as a bare console error, this says which URL. */
  readonly failedResponses: string[] = [];
  private constructor(
    readonly context: BrowserContext,
    readonly page: Page,
    private readonly profile: string,
  ) {}

  static async open(options: { timezoneId: string }): Promise<BrowserSession> {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-chromium-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
      viewport: { width: 1280, height: 900 },
      locale: "en-US",
      timezoneId: options.timezoneId,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const session = new BrowserSession(context, page, profile);
    session.watch(page);
    return session;
  }

  /** Another tab of the same browser (same profile and permissions), its errors kept with the first's. */
  async newPage(): Promise<Page> {
    const page = await this.context.newPage();
    this.watch(page);
    return page;
  }

  private watch(page: Page): void {
    page.on("console", m => {
      if (m.type() === "error") this.errors.push(`console: ${m.text()}`);
    });
    page.on("pageerror", err => this.errors.push(`page error: ${err.message}`));
    page.on("response", res => {
      if (res.status() >= 400)
        this.failedResponses.push(`${res.status()} ${res.request().method()} ${res.url()}`);
    });
  }

  async screenshot(name: string): Promise<string> {
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
    const file = path.join(SCREENSHOTS, `${name}.png`);
    await this.page.screenshot({ path: file, fullPage: true });
    return file;
  }

  async close(): Promise<void> {
    await this.context.close().catch(() => undefined);
    fs.rmSync(this.profile, { recursive: true, force: true });
  }
}
