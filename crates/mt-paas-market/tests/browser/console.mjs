// The market's console in a real browser: headless Chromium (Debian's package) driven by
// playwright-core. tests/browser.rs starts the market and a service and passes them in:
//   MARKET_URL, SERVICE_URL, SERVICE_ID, OPERATOR, PASSWORD, SCREENSHOTS (a directory)
// Each step that fails throws; the exit status is what the Rust test checks.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const market = env("MARKET_URL");
const service = env("SERVICE_URL");
const serviceId = env("SERVICE_ID");
const shots = env("SCREENSHOTS");
mkdirSync(shots, { recursive: true });

/** Polls `check` until it is true, for at most `ms`. */
async function eventually(what, check, ms = 20000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`never happened: ${what}`);
}

/** The service's answer for `tenant`. */
async function asTenant(tenant) {
  const response = await fetch(`${service}/whoami`, { headers: { "X-Tenant-ID": tenant } });
  return { status: response.status, body: await response.json().catch(() => ({})) };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox"],
});
try {
  const page = await (await browser.newContext({ locale: "ko-KR", viewport: { width: 1280, height: 800 } })).newPage();

  // Signed out, the console sends to the sign-in page.
  await page.goto(`${market}/console`);
  if (!page.url().endsWith("/console/login")) throw new Error(`not redirected: ${page.url()}`);
  await page.screenshot({ path: `${shots}/login.png` });

  // Sign in, by keyboard.
  await page.getByLabel("이름").fill(env("OPERATOR"));
  await page.getByLabel("비밀번호").fill(env("PASSWORD"));
  await page.getByLabel("비밀번호").press("Enter");
  await page.waitForURL(`${market}/console`);
  await page.getByRole("heading", { name: "서비스", exact: true }).waitFor();
  // The service heartbeats every second: its requests show in the charts.
  await eventually("the overview's charts have bars", async () => {
    await page.goto(`${market}/console`);
    return (await page.locator("figure svg rect title").count()) > 0;
  });
  await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });

  // Suspend korea: confirmed first, then the service answers 403 for korea.
  await page.goto(`${market}/console/services/${serviceId}`);
  await page.screenshot({ path: `${shots}/service.png`, fullPage: true });
  await page.locator("#tenant-korea").getByRole("button", { name: "정지" }).click();
  await page.getByRole("alert").waitFor();
  await page.screenshot({ path: `${shots}/confirm.png` });
  await page.getByRole("button", { name: "실행" }).click();
  await page.waitForURL(new RegExp(`/console/services/${serviceId}`));
  await eventually("korea suspended at the service", async () => {
    const { status, body } = await asTenant("korea");
    return status === 403 && body.code === "subscription_suspended";
  });

  // Reinstate korea: 200 again.
  await page.locator("#tenant-korea").getByRole("button", { name: "재개" }).click();
  await page.getByRole("button", { name: "실행" }).click();
  await page.waitForURL(new RegExp(`/console/services/${serviceId}`));
  await eventually("korea reinstated", async () => (await asTenant("korea")).status === 200);

  // Block snu with a message: the service answers with it.
  const message = "시스템 점검 중입니다. 잠시 후 다시 이용해 주세요.";
  await page.locator("#tenant-snu").getByLabel("사용자에게 보일 메시지").fill(message);
  await page.locator("#tenant-snu").getByRole("button", { name: "지금 차단" }).click();
  await page.getByRole("button", { name: "실행" }).click();
  await page.waitForURL(new RegExp(`/console/services/${serviceId}`));
  await eventually("snu blocked with the message", async () => {
    const { status, body } = await asTenant("snu");
    return status === 403 && body.code === "tenant_blocked" && body.detail === message;
  });
  // A fresh load of the page (not a reload, which can race the form's redirect).
  await page.goto(`${market}/console/services/${serviceId}`);
  await page.locator("#tenant-snu").getByText(message).waitFor();

  // Usage and audit alerts, from the navigation.
  await page.getByRole("link", { name: "사용량" }).click();
  await page.getByRole("heading", { name: /사용량/ }).waitFor();
  await page.screenshot({ path: `${shots}/usage.png`, fullPage: true });
  await page.getByRole("navigation", { name: "Service Market 운영 콘솔" }).getByRole("link", { name: "감사 알림" }).click();
  await page.getByRole("button", { name: "거르기" }).waitFor();
  await page.screenshot({ path: `${shots}/alerts.png`, fullPage: true });

  // Plans: edit basic's limit by keyboard, confirm, and see it in the table.
  await page.getByRole("link", { name: "요금제" }).click();
  await page.locator("#plan-basic").getByRole("link", { name: "고치기" }).click();
  const rpm = page.getByLabel("테넌트당 분당 요청 한도");
  if ((await page.getByLabel("요금제 ID").inputValue()) !== "basic") throw new Error("the form did not start with basic");
  await rpm.fill("5000");
  await rpm.press("Enter");
  await page.getByRole("alert").waitFor();
  await page.getByRole("button", { name: "실행" }).click();
  await page.waitForURL(`${market}/console/plans`);
  await page.locator("#plan-basic").getByText("5000", { exact: true }).waitFor();
  await page.screenshot({ path: `${shots}/plans.png`, fullPage: true });

  // Signing keys: rotate, confirmed; the new key signs new tokens.
  await page.getByRole("link", { name: "서명 키" }).click();
  await page.getByRole("button", { name: "새 키로 교체" }).click();
  await page.getByRole("button", { name: "실행" }).click();
  await page.waitForURL(`${market}/console/keys`);
  await page.getByText("현재 서명 키").waitFor();
  await page.screenshot({ path: `${shots}/keys.png`, fullPage: true });
  await page.goto(`${market}/console/services/${serviceId}`);

  // A form whose CSRF token was tampered with is refused, and nothing changes.
  await page.locator('#tenant-korea form[action$="/suspend"] input[name="csrf"]').evaluate((el) => { el.value = "tampered"; });
  await page.locator("#tenant-korea").getByRole("button", { name: "정지" }).click();
  await page.getByText("CSRF").waitFor();
  if ((await asTenant("korea")).status !== 200) throw new Error("a tampered form changed korea");

  // English on request.
  await page.goto(`${market}/console/lang/en`);
  await page.getByRole("heading", { name: "Services", exact: true }).waitFor();

  // Sign out; the console is closed again.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(`${market}/console/login`);
  await page.goto(`${market}/console`);
  if (!page.url().endsWith("/console/login")) throw new Error("still signed in after signing out");
  console.log("console: every browser step passed");
} finally {
  await browser.close();
}
