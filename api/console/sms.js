// An SMS's encoding and segment count, as the API measures them
// (shared/src/locale/segments.rs), for the live preview of unsaved text.

const BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const EXTENSION = "^{}\\[~]|€\u000C";

export function segments(text) {
  let septets = 0;
  let gsm = true;
  for (const c of text) {
    if (BASIC.includes(c)) septets += 1;
    else if (EXTENSION.includes(c)) septets += 2;
    else { gsm = false; break; }
  }
  const units = gsm ? septets : text.length; // UTF-16 code units
  const [single, part] = gsm ? [160, 153] : [70, 67];
  const count = units === 0 ? 0 : units <= single ? 1 : Math.ceil(units / part);
  return { encoding: gsm ? "GSM-7" : "UCS-2", units, count };
}
