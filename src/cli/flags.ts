// Strict parsers of flag values, shared by the verbs: a value that is not exactly what the flag takes is an error
// naming the flag and the value given ("0x10", "1e1", "1.0" and "" are not integers here).

/** A decimal integer and nothing else. */
export const DECIMAL_INTEGER = /^\d+$/;

/** A safe decimal integer ≥ `min` (0 or 1). */
export const integerFlag = (flag: string, min: number) => (v: string): number => {
  const n = Number(v.trim());
  if (!DECIMAL_INTEGER.test(v.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new Error(`${flag} must be ${min === 0 ? "a non-negative" : "a positive"} integer, got "${v}"`);
  }
  return n;
};

/** A number for which `check` holds; `what` says which numbers those are. */
export const numberFlag = (flag: string, check: (n: number) => boolean, what: string) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === "" || !check(n)) throw new Error(`${flag} must be ${what}, got "${v}"`);
  return n;
};

/** One of `values`. */
export function choiceFlag<T extends string>(flag: string, values: readonly T[]) {
  return (v: string): T => {
    if (!(values as readonly string[]).includes(v)) throw new Error(`${flag} must be ${values.join(" or ")}, got "${v}"`);
    return v as T;
  };
}
