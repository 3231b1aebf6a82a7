// The storefront end to end, in Chromium, through the page only: a customer creates an
// account, signs in, places an order that is confirmed, one rejected out_of_stock and one
// rejected insufficient_funds, watches each saga, cancels the confirmed order and sees the
// refund; an admin adds stock, creates a product, filters the orders and credits a wallet.
// Throughout: no console error, no request to another origin.
//
// Run by web/tests/run.sh (`make browser-test`), which starts the stack and sets
// STOREFRONT_URL. Every wait is Playwright's own (polling until a deadline); no sleeps.
// A failed step leaves a screenshot in web/tests/output/.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const BASE = process.env.STOREFRONT_URL;
assert.ok(BASE, 'STOREFRONT_URL is not set: run web/tests/run.sh (make browser-test)');
const ORIGIN = new URL(BASE).origin;
const OUTPUT = fileURLToPath(new URL('../output/', import.meta.url));
const DOCS_SCREENSHOT = fileURLToPath(new URL('../../../docs/storefront-saga.png', import.meta.url));
// A deadline, not a delay: the saga settles an order in a second or two.
const DEADLINE_MS = 30_000;

const customer = {
  name: 'Browser Test',
  email: `shopper-${Date.now()}@example.com`,
  password: 'correct horse battery',
};
const admin = { email: process.env.ADMIN_EMAIL ?? 'admin@example.com', password: process.env.ADMIN_PASSWORD ?? 'admin-password' };

let browser;
let page;
const consoleErrors = [];
const requests = [];
const orders = {};
let failed = false;

before(async () => {
  mkdirSync(OUTPUT, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  context.setDefaultTimeout(DEADLINE_MS);
  context.on('request', (request) => requests.push({ method: request.method(), url: request.url() }));
  page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(`${message.text()} (${message.location().url})`);
  });
  page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));
});

after(async () => {
  await browser?.close();
});

/** A test step: skipped after a failed one; a failure leaves a screenshot. */
function step(name, body) {
  test(name, async (t) => {
    if (failed) {
      t.skip('an earlier step failed');
      return;
    }
    const errorsBefore = consoleErrors.length;
    try {
      await body();
      assert.deepEqual(consoleErrors.slice(errorsBefore), [], 'the page logged errors');
    } catch (error) {
      failed = true;
      const file = `${OUTPUT}failed-${name.replace(/\W+/g, '-')}.png`;
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      throw error;
    }
  });
}

// --- what a visitor does --------------------------------------------------------------

const nav = (name) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name });

async function signIn({ email, password }) {
  await page.getByRole('banner').getByRole('link', { name: 'Sign in' }).click();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  // By keyboard: Enter in the last field submits the form.
  await page.getByLabel('Password').press('Enter');
  await page.getByText(`Signed in as ${email}`).waitFor();
}

async function addToCart(productName, quantity = 1) {
  await nav('Catalog').click();
  const card = page.getByRole('article', { name: productName });
  await card.getByRole('button', { name: 'Add to cart' }).click();
  await page.getByText(`${productName} added to the cart`).waitFor();
  await nav(/^Cart/).click();
  if (quantity !== 1) {
    const field = page.getByLabel(`Quantity of ${productName}`);
    await field.fill(String(quantity));
    await field.press('Tab');
  }
}

/** Places the cart's order; returns its id (the order's page opens). */
async function placeOrder() {
  await page.getByRole('button', { name: 'Place order' }).click();
  await page.waitForURL(/#\/orders\/[0-9a-f-]{36}$/);
  return page.url().split('/').at(-1);
}

/**
 * A new account's wallet is opened by an event (UserRegistered) a moment after sign-up;
 * until then GET /api/v1/wallets/me answers 404, and Chromium logs every 404 as a console
 * error. So the test waits for the wallet here, outside the page (Node's fetch with the
 * page's token), before the page first asks for it.
 */
async function walletOpened() {
  const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem('shop.session')).token);
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const answer = await fetch(new URL('/api/v1/wallets/me', BASE), { headers: { authorization: `Bearer ${token}` } });
    if (answer.ok) return;
    assert.ok(Date.now() < deadline, `no wallet after ${DEADLINE_MS} ms: ${answer.status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const summary = () => page.getByRole('region', { name: 'Order summary' });
const saga = () => page.getByRole('list', { name: 'Saga steps, oldest first' });

async function expectOrder(status, reason) {
  await summary().locator('.order-status').getByText(status, { exact: true }).waitFor();
  if (reason) await summary().locator('.order-reason').getByText(reason, { exact: true }).waitFor();
}

async function sagaTitles() {
  return saga().locator('.step-title').allTextContents();
}

/** The text of the saga card titled `title` (once it is there). */
async function stepOf(title) {
  const item = saga().getByRole('listitem').filter({ has: page.getByText(title, { exact: true }) });
  await item.waitFor();
  return item.textContent();
}

// --- the scenario ---------------------------------------------------------------------

step('a visitor creates an account, signs out, and signs in again', async () => {
  await page.goto(BASE);
  await page.getByRole('heading', { name: 'Catalog' }).waitFor();
  await page.getByRole('banner').getByRole('link', { name: 'Register' }).click();
  await page.getByLabel('Name').fill(customer.name);
  await page.getByLabel('Email').fill(customer.email);
  await page.getByLabel('Password').fill(customer.password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByText(`Signed in as ${customer.email}`).waitFor();

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('banner').getByRole('link', { name: 'Sign in' }).waitFor();
  await signIn(customer);
  await walletOpened();
});

step('an order is confirmed: order → inventory → payment → order', async () => {
  await addToCart('Enamel mug');
  await page.getByText(/^Your wallet: \$1,000\.00$/).waitFor();
  orders.confirmed = await placeOrder();
  await expectOrder('confirmed');
  assert.deepEqual(await sagaTitles(), ['Order placed', 'Stock reserved', 'Payment succeeded', 'Order confirmed']);
  assert.match(await stepOf('Stock reserved'), /inventory-service/);
  assert.match(await stepOf('Payment succeeded'), /payment-service/);
  const payments = page.getByRole('region', { name: 'Payments and refunds' });
  await payments.getByRole('cell', { name: 'charge', exact: true }).waitFor();
  await payments.getByText(/^Your wallet: \$987\.50$/).waitFor();
});

step('an order for more than the stock is rejected out_of_stock by inventory-service', async () => {
  await addToCart('Limited-edition art print', 3);
  await page.getByText('Only 2 in stock').waitFor();
  orders.outOfStock = await placeOrder();
  await expectOrder('rejected', 'out_of_stock');
  assert.deepEqual(await sagaTitles(), ['Order placed', 'Stock rejected']);
  assert.match(await stepOf('Stock rejected'), /inventory-service.*failure/s);
});

step('an order above the wallet is rejected insufficient_funds, and its stock released', async () => {
  await addToCart('Espresso machine');
  await page.getByText('More than your wallet holds').waitFor();
  // The button by keyboard: focus it, press Enter.
  await page.getByRole('button', { name: 'Place order' }).focus();
  await page.keyboard.press('Enter');
  await page.waitForURL(/#\/orders\/[0-9a-f-]{36}$/);
  orders.noFunds = page.url().split('/').at(-1);
  await expectOrder('rejected', 'insufficient_funds');
  assert.deepEqual(await sagaTitles(), ['Order placed', 'Stock reserved', 'Payment failed', 'Stock released']);
  assert.match(await stepOf('Payment failed'), /failure/);
  assert.match(await stepOf('Stock released'), /compensation/);
  await page.getByText('No payments or refunds for this order.').waitFor();
});

step('"My orders" shows each status and reason', async () => {
  await nav('My orders').click();
  const expected = [
    [orders.confirmed, 'confirmed', null],
    [orders.outOfStock, 'rejected', 'out_of_stock'],
    [orders.noFunds, 'rejected', 'insufficient_funds'],
  ];
  for (const [id, status, reason] of expected) {
    const card = page.getByRole('article', { name: `Order ${id.slice(-8)}` });
    await card.locator('.order-status').getByText(status, { exact: true }).waitFor();
    if (reason) await card.getByText(reason, { exact: true }).waitFor();
  }
  await page.getByText(/^Your wallet: \$987\.50$/).waitFor();
});

step('cancelling the confirmed order refunds it: compensations in the saga', async () => {
  await page.getByRole('link', { name: `Order ${orders.confirmed.slice(-8)}` }).click();
  await expectOrder('confirmed');
  await page.getByRole('button', { name: 'Cancel order' }).click();
  await expectOrder('cancelled', 'cancelled_by_customer');
  const payments = page.getByRole('region', { name: 'Payments and refunds' });
  await payments.getByRole('cell', { name: 'refund', exact: true }).waitFor();
  await payments.getByText(/^Your wallet: \$1,000\.00$/).waitFor();
  await stepOf('Payment refunded');
  assert.deepEqual(await sagaTitles(), [
    'Order placed',
    'Stock reserved',
    'Payment succeeded',
    'Order confirmed',
    'Order cancelled',
    'Payment refunded',
  ]);
  assert.match(await stepOf('Payment refunded'), /payment-service.*compensation/s);
  assert.equal(await page.getByRole('button', { name: 'Cancel order' }).count(), 0);

  await page.locator('main').screenshot({ path: `${OUTPUT}order.png` });
  // docs/storefront-saga.png is this view; SAVE_DOCS_SCREENSHOT=1 takes it again.
  const sagaView = page.getByRole('region', { name: 'The saga' });
  await sagaView.screenshot({ path: process.env.SAVE_DOCS_SCREENSHOT === '1' ? DOCS_SCREENSHOT : `${OUTPUT}saga.png` });
});

step('the pages fit a phone screen', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const pages = [
    ['catalog', '#/', () => page.getByRole('article', { name: 'Espresso machine' }).waitFor()],
    ['order', `#/orders/${orders.confirmed}`, () => stepOf('Payment refunded')],
    ['cart', '#/cart', () => page.getByText('Your cart is empty.').waitFor()],
  ];
  for (const [name, path, loaded] of pages) {
    await page.goto(new URL(path, BASE).href);
    await loaded();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${path} is ${overflow}px wider than a phone screen`);
    await page.screenshot({ path: `${OUTPUT}phone-${name}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1100, height: 900 });
});

step('an admin adds stock, creates a product, filters the orders and credits a wallet', async () => {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await signIn(admin);
  await nav('Admin').click();

  await page.getByLabel('Stock change for Limited-edition art print').fill('5');
  await page.getByRole('button', { name: 'Adjust stock of Limited-edition art print' }).click();
  await page.getByText('Limited-edition art print: 7 in stock now.').waitFor();

  const sku = `BROWSER-${Date.now()}`;
  await page.getByLabel('SKU').fill(sku);
  await page.getByLabel('Product name').fill('Reading lamp');
  await page.getByLabel('Price (USD)').fill('35.00');
  await page.getByLabel('Initial stock').fill('3');
  await page.getByRole('button', { name: 'Create product' }).click();
  await page.getByText(`Created Reading lamp (${sku}) with 3 in stock.`).waitFor();
  await page.getByRole('table', { name: 'Stock per product' }).getByText(sku).waitFor();

  const all = page.getByRole('region', { name: 'All orders' });
  await all.getByText('3 of 3 orders shown.').waitFor();
  await all.getByLabel('Status').selectOption('rejected');
  await all.getByText('2 of 3 orders shown.').waitFor();
  await all.getByText('out_of_stock', { exact: true }).waitFor();
  await all.getByText('insufficient_funds', { exact: true }).waitFor();

  await all.getByRole('button', { name: `Credit the wallet of the customer of order ${orders.noFunds.slice(-8)}` }).click();
  await page.getByLabel('Amount (USD)').fill('500');
  await page.getByRole('button', { name: 'Credit wallet' }).click();
  await page.getByText(/the balance is \$1,500\.00\.$/).waitFor();
  await page.screenshot({ path: `${OUTPUT}admin.png`, fullPage: true });

  await nav('Catalog').click();
  await page.getByRole('article', { name: 'Limited-edition art print' }).getByText('7 in stock', { exact: true }).waitFor();
  await page.getByRole('article', { name: 'Reading lamp' }).getByText('3 in stock', { exact: true }).waitFor();
});

step('every request stayed on the page origin, and the polling was bounded', async () => {
  const elsewhere = requests.filter((request) => new URL(request.url).origin !== ORIGIN);
  assert.deepEqual(elsewhere, [], 'requests to another origin');
  for (const [label, id] of Object.entries(orders)) {
    const asked = requests.filter((request) => request.method === 'GET' && request.url.endsWith(`/api/v1/orders/${id}`)).length;
    // A few answers per saga step with backoff; a busy loop would be hundreds.
    assert.ok(asked > 0 && asked <= 30, `order ${label} was asked for ${asked} times`);
  }
  assert.deepEqual(consoleErrors, []);
});
