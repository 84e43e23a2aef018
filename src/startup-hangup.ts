/**
 * SIGHUP from the process's first module on. Its default ends the process, and systemd, which
 * counts the service started at exec (Type=exec), may send `systemctl reload` (a certbot deploy
 * hook right after a restart) while the modules still load, before `serve` listens for it. So
 * main.ts imports this module first, and ES modules run in the order they are imported: every
 * other module loads with SIGHUP already said and ignored. `serve` takes over (hangupHandler);
 * any other command gets the default back (endStartupHangups).
 */

function ignoreWhileStarting(): void {
  process.stderr.write("citadel: SIGHUP while starting: ignored (the certificate is read at start)\n");
}

process.on("SIGHUP", ignoreWhileStarting);

/** Lets go of SIGHUP: call once another handler is in place, or to give a command the default back. */
export function endStartupHangups(): void {
  process.off("SIGHUP", ignoreWhileStarting);
}
