// Small DOM helpers. Elements are built with createElement and text nodes only (never
// innerHTML), so text from the API can never become markup, and the page needs no inline
// script or style: the Content-Security-Policy can stay at default-src 'self'.

/**
 * h('button', {class: 'primary', onclick: fn}, 'Place order'): attributes are set as
 * attributes, `on*` functions become listeners, other non-string values (booleans,
 * numbers) become properties; children are nodes, strings, or arrays of them.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.className = value;
    else if (typeof value === 'string') element.setAttribute(name, value);
    else if (value === true) element.setAttribute(name, '');
    else element[name] = value;
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces everything inside `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

const usd = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });

export function money(cents) {
  return usd.format(cents / 100);
}

/** "12.50" (what a person types) -> 1250 cents; null when it is not an amount. */
export function parseCents(text) {
  const match = /^\s*(\d+)(?:\.(\d{1,2}))?\s*$/.exec(text);
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0'));
}

const clock = new Intl.DateTimeFormat('en-GB', {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  fractionalSecondDigits: 3,
});
const day = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'short' });

export function timeOfDay(iso) {
  return clock.format(new Date(iso));
}

export function dateTime(iso) {
  return day.format(new Date(iso));
}

/** The last 8 hex digits: ids are UUID v7, whose first digits are the time of creation. */
export function shortId(id) {
  return id.slice(-8);
}

/** A <time> element with the exact timestamp as its machine-readable value. */
export function time(iso, format = dateTime) {
  return h('time', { datetime: iso }, format(iso));
}

/** A form field: <label for> + control + a slot for its error message. */
export function field(label, control, hint = null) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
  const described = [hint && `${id}-hint`, `${id}-error`].filter(Boolean).join(' ');
  control.setAttribute('aria-describedby', described);
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    hint && h('p', { class: 'hint', id: `${id}-hint` }, hint),
    control,
    error,
  );
}

/** Shows the messages of a 422 next to the fields named in it; returns the rest. */
export function showFieldErrors(form, errors) {
  for (const slot of form.querySelectorAll('.field-error')) {
    slot.hidden = true;
    slot.textContent = '';
  }
  for (const control of form.querySelectorAll('[aria-invalid]')) control.removeAttribute('aria-invalid');
  const unplaced = {};
  for (const [name, message] of Object.entries(errors)) {
    const control = form.elements.namedItem(name);
    const slot = control && form.querySelector(`#${control.id}-error`);
    if (slot) {
      slot.textContent = message;
      slot.hidden = false;
      control.setAttribute('aria-invalid', 'true');
    } else {
      unplaced[name] = message;
    }
  }
  return unplaced;
}

/** The one message area of a view (role=alert for errors, status for news). */
export function messageArea() {
  const area = h('div', { class: 'message', role: 'status', 'aria-live': 'polite' });
  return {
    element: area,
    error(text) {
      area.className = 'message error';
      area.setAttribute('role', 'alert');
      area.textContent = text;
    },
    info(text) {
      area.className = 'message info';
      area.setAttribute('role', 'status');
      area.textContent = text;
    },
    clear() {
      area.className = 'message';
      area.textContent = '';
    },
  };
}

/** Disables a form's controls while `work` runs; returns what `work` returns. */
export async function busy(form, work) {
  const controls = [...form.elements].filter((control) => !control.disabled);
  controls.forEach((control) => {
    control.disabled = true;
  });
  form.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    controls.forEach((control) => {
      control.disabled = false;
    });
    form.removeAttribute('aria-busy');
  }
}
