// Sign in (POST /api/v1/auth/token) and create an account (POST /api/v1/users, then sign
// in with the same credentials). Both return to `?next=` afterwards.

import { ApiError, api, session } from '../api.js';
import { busy, field, h, messageArea, showFieldErrors } from '../dom.js';

function nextPath(context) {
  const next = context.params.get('next') ?? '/';
  // Only a path of this page, never an address elsewhere.
  return /^\/[\w/-]*$/.test(next) && !next.startsWith('/signin') && !next.startsWith('/register') ? next : '/';
}

function credentialFields({ newPassword }) {
  return [
    field('Email', h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true })),
    field(
      'Password',
      h('input', {
        name: 'password',
        type: 'password',
        autocomplete: newPassword ? 'new-password' : 'current-password',
        required: true,
        minLength: newPassword ? 8 : null,
      }),
      newPassword ? 'At least 8 characters.' : null,
    ),
  ];
}

async function signIn(email, password) {
  const answer = await api('POST', '/api/v1/auth/token', { body: { email, password } });
  session.start(answer.access_token, email);
}

function describe(error, messages) {
  if (error instanceof ApiError) return messages[error.status] ?? error.message;
  return 'The shop cannot be reached. Check your connection and try again.';
}

export function signInView(main, context) {
  const message = messageArea();
  if (session.notice) message.info(session.notice);
  const form = h('form', { class: 'card narrow' }, ...credentialFields({ newPassword: false }),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  const next = nextPath(context);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.clear();
    const data = new FormData(form);
    try {
      await busy(form, () => signIn(data.get('email'), data.get('password')));
      context.navigate(next);
    } catch (error) {
      message.error(describe(error, { 401: 'The email or the password is wrong.' }));
    }
  });
  main.append(
    h('h1', { tabindex: '-1' }, 'Sign in'),
    message.element,
    form,
    h('p', {}, 'New here? ', h('a', { href: `#/register?next=${encodeURIComponent(next)}` }, 'Register'), '.'),
  );
}

export function registerView(main, context) {
  const message = messageArea();
  const form = h(
    'form',
    { class: 'card narrow' },
    field('Name', h('input', { name: 'name', autocomplete: 'name', required: true })),
    ...credentialFields({ newPassword: true }),
    h('button', { type: 'submit', class: 'primary' }, 'Create account'),
  );
  const next = nextPath(context);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.clear();
    showFieldErrors(form, {});
    const data = new FormData(form);
    const body = { name: data.get('name'), email: data.get('email'), password: data.get('password') };
    try {
      await busy(form, async () => {
        await api('POST', '/api/v1/users', { body });
        await signIn(body.email, body.password);
      });
      context.navigate(next);
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) {
        const rest = showFieldErrors(form, error.fieldErrors);
        message.error(Object.values(rest).join(' ') || 'Please correct the fields marked below.');
      } else {
        message.error(describe(error, { 409: 'An account with this email exists already. Sign in instead.' }));
      }
    }
  });
  main.append(
    h('h1', { tabindex: '-1' }, 'Create an account'),
    h('p', {}, 'A new account comes with a wallet holding some demo credit.'),
    message.element,
    form,
    h('p', {}, 'Have an account? ', h('a', { href: `#/signin?next=${encodeURIComponent(next)}` }, 'Sign in'), '.'),
  );
}
