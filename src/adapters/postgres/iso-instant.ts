/**
 * `date.toISOString()`, about four times faster: V8's own takes ~1 µs a call here, and writing session
 * rows calls it three to five times a row. The calendar date comes from toISOString once per UTC day (so
 * every year, leap day and the extended ±YYYYYY form stay V8's); the time of day is plain arithmetic.
 */

const DAY_MS = 86_400_000;
let cachedDay = Number.NaN;
let cachedPrefix = "";

export function isoInstant(date: Date): string {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) return date.toISOString(); // throws the usual RangeError
  const day = Math.floor(ms / DAY_MS);
  if (day !== cachedDay) {
    cachedPrefix = new Date(day * DAY_MS).toISOString().slice(0, -13); // up to and including the "T"
    cachedDay = day;
  }
  let rest = ms - day * DAY_MS;
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = Math.floor(rest / 1_000);
  const millis = rest - seconds * 1_000;
  return `${cachedPrefix}${pad2(hours)}:${pad2(minutes)}:${pad2(seconds)}.${millis < 10 ? "00" : millis < 100 ? "0" : ""}${millis}Z`;
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}
