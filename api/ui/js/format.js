// Formatting of times, durations and numbers for people. Instants are shown in the browser's zone
// unless a caller passes a fixed UTC offset (plans keep the offset their times were written in).

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const weekdayTime = new Intl.DateTimeFormat(undefined, {
  weekday: "short", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateTime.format(d);
}

export function whenShort(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : weekdayTime.format(d);
}

/** "3 min ago", "in 2 h": relative to now. */
export function relative(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  let text;
  if (abs < 60) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.round(abs / 60)} min`;
  else if (abs < 86400) text = `${Math.round(abs / 3600)} h`;
  else text = `${Math.round(abs / 86400)} d`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

/** Milliseconds as "840 ms", "2.4 s", "3 min 5 s", "2 h 10 min". */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  const hours = Math.floor(m / 60);
  return `${hours} h ${m - hours * 60} min`;
}

/** Minutes as "45 min", "2 h 30 min", "3 d 4 h". */
export function minutes(total) {
  const m = Math.round(total);
  if (Math.abs(m) < 60) return `${m} min`;
  const d = Math.floor(m / 1440);
  const hours = Math.floor((m - d * 1440) / 60);
  const rest = m - d * 1440 - hours * 60;
  if (d) return `${d} d` + (hours ? ` ${hours} h` : "");
  return `${hours} h` + (rest ? ` ${rest} min` : "");
}

const numberFormats = new Map();

export function number(n, digits = 0) {
  if (n === null || n === undefined) return "—";
  // One formatter per precision: toLocaleString builds a new one on every call, which a heatmap of
  // thousands of cells pays for thousands of times.
  let fmt = numberFormats.get(digits);
  if (!fmt) {
    fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: digits });
    numberFormats.set(digits, fmt);
  }
  return fmt.format(Number(n));
}

/**
 * An ISO 8601 instant with its own UTC offset kept: {ms, offset} where offset is minutes east of UTC.
 * Plans and availability keep the plant's offset, so their clocks read as the plant's.
 */
export function instant(text) {
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return null;
  const m = /([+-])(\d{2}):?(\d{2})$/.exec(text);
  const offset = m ? (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : 0;
  return { ms, offset };
}

/** Wall-clock parts of an instant at a fixed offset (minutes east of UTC). */
export function wall(ms, offset) {
  const d = new Date(ms + offset * 60000);
  return {
    year: d.getUTCFullYear(), month: d.getUTCMonth(), day: d.getUTCDate(),
    hour: d.getUTCHours(), minute: d.getUTCMinutes(), weekday: d.getUTCDay(),
  };
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

export function pad(n) {
  return String(n).padStart(2, "0");
}

export function clockAt(ms, offset) {
  const w = wall(ms, offset);
  return `${pad(w.hour)}:${pad(w.minute)}`;
}

export function dayAt(ms, offset) {
  const w = wall(ms, offset);
  return `${DAYS[w.weekday]} ${w.day} ${MONTHS[w.month]}`;
}

export function offsetName(offset) {
  const sign = offset < 0 ? "-" : "+";
  const a = Math.abs(offset);
  return `UTC${sign}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

/** JSON for people: two-space indentation; long outputs stay whole (the run page folds them). */
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

const zoneFormats = new Map();

/** An instant as wall time in an IANA zone (a task's): "Mon, 30 Nov 2026, 05:30". */
export function inZone(iso, timeZone, short = false) {
  const key = `${timeZone}|${short}`;
  let fmt = zoneFormats.get(key);
  if (!fmt) {
    try {
      fmt = new Intl.DateTimeFormat(undefined, {
        timeZone, weekday: "short", day: "numeric", month: "short", year: short ? undefined : "numeric",
        hour: "2-digit", minute: "2-digit", hourCycle: "h23",
      });
    } catch {
      fmt = dateTime; // a zone this browser does not know: its own zone instead
    }
    zoneFormats.set(key, fmt);
  }
  return fmt.format(new Date(iso));
}
