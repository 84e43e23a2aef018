/**
 * The systemd units, embedded in the binary so that `citadel install` needs nothing but
 * itself. The units are the one source of the paths and the credential name they use: the
 * installer reads them from the text rather than repeating them.
 */
import serviceUnit from "../../config/citadel.service" with { type: "text" };
import agentUnit from "../../config/citadel-mesh-agent.service" with { type: "text" };

export interface UnitFile {
  name: string;
  text: string;
}

export const SERVICE_UNIT: UnitFile = { name: "citadel.service", text: serviceUnit };
export const AGENT_UNIT: UnitFile = { name: "citadel-mesh-agent.service", text: agentUnit };
export const UNITS: readonly UnitFile[] = [SERVICE_UNIT, AGENT_UNIT];

/** Every value of `key=` in a unit's text, in order (comments skipped). */
export function unitSetting(unit: UnitFile, key: string): string[] {
  const prefix = `${key}=`;
  return unit.text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.startsWith(prefix))
    .map((line) => line.slice(prefix.length));
}

/** The root key credential the service unit loads: its name (seal.credential) and file. */
export function serviceCredential(): { name: string; path: string } {
  const [setting] = unitSetting(SERVICE_UNIT, "LoadCredentialEncrypted");
  const match = setting?.match(/^([A-Za-z0-9_.-]+):(\/\S+)$/);
  if (!match) throw new Error(`${SERVICE_UNIT.name}: no LoadCredentialEncrypted=<name>:<path> line`);
  return { name: match[1]!, path: match[2]! };
}
