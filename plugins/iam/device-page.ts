/**
 * The minimal approval page of a device login: it shows which client asks, from which
 * address, and the code the terminal shows, and takes the user's credentials and decision.
 * No script, no style sheet, no third-party anything: a form that posts to itself — by a
 * relative address, so that it still does behind a reverse proxy serving Citadel under a path.
 */
const PAGE_CSP = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(body: string, init: { status?: number; headers?: Record<string, string> } = {}): Response {
  return new Response(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Citadel: approve a login</title></head><body>${body}</body></html>`, {
    status: init.status ?? 200,
    headers: { ...init.headers, "content-type": "text/html; charset=utf-8", "content-security-policy": PAGE_CSP },
  });
}

export interface PendingLogin {
  client_name: string;
  client_address: string;
  scopes: string[];
  expires_at: string;
}

export function approvalPage({ userCode, pending, viewerAddress }: { userCode: string; pending: PendingLogin | null; viewerAddress: string }): Response {
  // What the server saw comes first; the name is the client's own claim, isolated (<bdi>) so
  // that direction marks in it cannot reorder the sentence around it.
  const details = pending
    ? `<p>A login from <strong>${escape(pending.client_address)}</strong>${
        pending.client_address === viewerAddress ? " (this computer's address)" : ` — this page is open from ${escape(viewerAddress)}`
      } asks for your account, with the scopes <code>${escape(pending.scopes.join(" "))}</code>, until ${escape(pending.expires_at)}. It says it is <bdi>${escape(pending.client_name)}</bdi>.</p><p>Approve only if you started this login and the code below is the one your terminal shows.</p>`
    : `<p>Enter the code your terminal shows.</p>`;
  return page(`<h1>Approve a login</h1>${details}
<form method="post" action="device">
<p><label>Code <input name="user_code" value="${escape(userCode)}" required autocomplete="off"></label></p>
<p><label>Email <input name="email" type="email" required autocomplete="username"></label></p>
<p><label>Password <input name="password" type="password" required autocomplete="current-password"></label></p>
<p><label>TOTP code (if enabled) <input name="totp" inputmode="numeric" autocomplete="one-time-code"></label></p>
<p><button name="decision" value="approve">Approve</button> <button name="decision" value="deny">Deny</button></p>
</form>`);
}

/** A right password without its second factor, in the words of the form above (its "TOTP code" field). */
export const TOTP_MISSING_ON_PAGE = "This account uses two-factor authentication: enter the code your authenticator app shows as the TOTP code, and approve again.";

/** The outcome of a submitted form; a refusal with its status and headers (401, 404, 429 with Retry-After). */
export function resultPage(message: string, init: { status?: number; headers?: Record<string, string> } = {}): Response {
  return page(`<h1>Citadel</h1><p>${escape(message)}</p>`, init);
}
