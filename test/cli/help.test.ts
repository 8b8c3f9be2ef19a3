import { describe, expect, it } from "vitest";
import { buildProgram } from "../../src/cli/main.js";

describe("tsgc --help", () => {
  it("names the program", () => {
    expect(buildProgram().helpInformation()).toContain("Usage: tsgc");
  });
});
