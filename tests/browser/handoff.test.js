"use strict";
// The demo widget and each simulator's agent desktop in headless Chromium, as a
// person uses them: chat with the bot, ask for a human, and answer as the agent
// (accept, type, reply, end). Run by infra/browser-test.sh, which starts the
// stack and the demo runtime and passes their URLs in the environment.

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { chromium } = require("playwright-core");

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the browser tests through infra/browser-test.sh`);
  return value;
}

const DEMO_URL = required("DEMO_URL");
const SIM_URL = required("SIM_URL");
const ARTIFACTS = required("BROWSER_ARTIFACTS");
// Platform::capabilities of the e2e crate, keyed by simulator prefix.
const CAPABILITIES = JSON.parse(required("PLATFORM_CAPABILITIES"));
const PROVIDERS = (process.env.BROWSER_PROVIDERS || Object.keys(CAPABILITIES).join(","))
  .split(",")
  .map((p) => p.trim())
  .filter(Boolean);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// Longest wait for one thing to show up (the relay and poller are real, on 2 cores).
const WAIT_MS = 30_000;

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives every launch a fresh temporary profile. Without the
    // background-networking flags Chromium keeps calling out to a closed network.
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  if (browser) await browser.close();
});

/** Polls `check` until it returns something truthy; the last value or error is reported. */
async function until(what, check, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The customer sends a message in the widget and sees it in the chat. */
async function say(widget, text) {
  await widget.getByTestId("input").fill(text);
  await widget.getByTestId("input").press("Enter");
  await widget.getByTestId("user-message").filter({ hasText: text }).last().waitFor();
}

function notSupported(provider, step, why) {
  console.log(`NOT SUPPORTED ${provider}: ${step} (${why}); step skipped`);
}

async function scenario(provider) {
  const caps = CAPABILITIES[provider];
  assert.ok(caps, `no capabilities for ${provider}: one of ${Object.keys(CAPABILITIES).join(", ")}`);
  const dir = path.join(ARTIFACTS, provider);
  fs.mkdirSync(dir, { recursive: true });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(WAIT_MS);
  const widget = await context.newPage();
  const desktop = await context.newPage();
  let shots = 0;
  const snap = async (page, step) => {
    shots += 1;
    const file = path.join(dir, `${String(shots).padStart(2, "0")}-${step}.png`);
    // The widget scrolls smoothly to its newest line: let it arrive before the picture.
    await page.waitForFunction(() => {
      const m = document.getElementById("messages");
      return !m || m.scrollHeight - m.scrollTop - m.clientHeight < 2;
    });
    await page.screenshot({ path: file });
    console.log(`screenshot ${file}`);
  };

  try {
    // The customer chats with the bot, then asks for a human.
    await widget.goto(`${DEMO_URL}/?provider=${encodeURIComponent(provider)}`);
    const customer = `Ada ${provider}`;
    await widget.getByTestId("name").fill(customer);
    await say(widget, "hi");
    await widget.getByTestId("bot-message").filter({ hasText: `Hi ${customer}!` }).waitFor();
    await say(widget, "my order arrived broken");
    await widget.getByTestId("bot-message").filter({ hasText: "damaged" }).waitFor();
    await snap(widget, "widget-bot-chat");
    await say(widget, "I want to talk to a human");
    const handoff = widget.getByTestId("handoff-notice");
    await handoff.waitFor();
    const conversationId = await handoff.getAttribute("data-conversation-id");
    assert.ok(conversationId, "the handoff notice names the platform's conversation");
    assert.equal(await widget.getByTestId("status").textContent(), "waiting");
    await snap(widget, "widget-handoff-notice");

    // The agent finds it queued in the desktop, with what the customer told the bot.
    await desktop.goto(`${SIM_URL}/${provider}/desktop`);
    const item = desktop.locator(
      `[data-testid="conversation-item"][data-conversation-id="${conversationId.replace(/["\\]/g, "\\$&")}"]`,
    );
    await item.waitFor();
    assert.equal(await item.getAttribute("data-state"), "queued");
    await item.click();
    await desktop.getByTestId("transcript").filter({ hasText: "my order arrived broken" }).waitFor();
    await snap(desktop, "desktop-queued");

    await desktop.getByTestId("accept").click();
    await desktop.getByTestId("state").filter({ hasText: /^active$/ }).waitFor();
    if (caps.agent_joined) {
      await widget.getByTestId("agent-joined-notice").filter({ hasText: "Sam joined" }).waitFor();
      await widget.getByTestId("status").filter({ hasText: /^connected$/ }).waitFor();
      await snap(widget, "widget-agent-joined");
    } else {
      notSupported(provider, "agent joined on accept", "no join signal; derived from the agent's first message below");
    }

    // The agent types: the widget shows it while the platform has a typing signal.
    const reply = `Hi ${customer}, Sam here on ${provider}. I can help.`;
    await desktop.getByTestId("reply").pressSequentially(reply);
    if (caps.agent_typing) {
      await widget.getByTestId("agent-typing").waitFor({ state: "visible" });
      assert.match(await widget.getByTestId("agent-typing-text").textContent(), /Sam is typing/);
      await snap(widget, "widget-agent-typing");
    } else {
      notSupported(provider, "agent typing indicator", "the platform has no agent typing signal");
    }
    await snap(desktop, "desktop-typing-reply");
    await desktop.getByTestId("send").click();
    await widget.getByTestId("agent-message").filter({ hasText: reply }).waitFor();
    await widget.getByTestId("agent-joined-notice").filter({ hasText: "Sam joined" }).waitFor();
    await widget.getByTestId("agent-typing").waitFor({ state: "hidden" });
    await snap(widget, "widget-agent-reply");

    // The customer answers; the agent sees it.
    const answer = `My order number is 1234 (${provider})`;
    await say(widget, answer);
    await desktop.getByTestId("message").filter({ hasText: answer }).waitFor();
    await snap(desktop, "desktop-customer-message");

    // The agent ends: the widget closes and takes no more input.
    await desktop.getByTestId("end").click();
    await widget.getByTestId("closed-notice").filter({ hasText: "Chat ended by agent" }).waitFor();
    await widget.getByTestId("status").filter({ hasText: /^ended$/ }).waitFor();
    assert.equal(await widget.getByTestId("widget").getAttribute("data-state"), "ended");
    await until("the widget input to be disabled", () => widget.getByTestId("input").isDisabled());
    assert.ok(await widget.getByTestId("send").isDisabled(), "send is disabled");
    await snap(widget, "widget-closed");
    await desktop.getByTestId("state").filter({ hasText: /^ended$/ }).waitFor();
    await snap(desktop, "desktop-ended");
  } catch (error) {
    for (const [name, page] of [["widget", widget], ["desktop", desktop]]) {
      const file = path.join(dir, `failure-${name}.png`);
      await page.screenshot({ path: file }).then(
        () => console.log(`screenshot ${file}`),
        () => {},
      );
    }
    throw error;
  } finally {
    await context.close();
  }
}

for (const provider of PROVIDERS) {
  test(`${provider}: widget handoff, agent desktop accept/type/reply/end`, { timeout: 180_000 }, () =>
    scenario(provider),
  );
}
