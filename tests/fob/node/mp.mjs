// Runs MicroPython (the WebAssembly port, npm @micropython/micropython-webassembly-pyscript)
// under Node.js for the fob's tests.
//
//   node mp.mjs run SCRIPT.py [DIR...]   copy the .py files of each DIR into the
//                                        interpreter's filesystem root, run SCRIPT.py;
//                                        exit 1 with the traceback on stderr if it raises;
//                                        "#--- exec" lines split it into separate executions
//
// The tests that drive a whole board through mpremote use the virtual fob instead
// (src/hwtoken/fob/emulator, `hwtoken fob emulate`).
import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

function copyDirs(mp, dirs) {
  for (const dir of dirs) {
    for (const name of fs.readdirSync(dir)) {
      if (name.endsWith(".py") || name.endsWith(".json")) {
        mp.FS.writeFile("/" + name, fs.readFileSync(path.join(dir, name)));
      }
    }
  }
}

async function run(script, dirs) {
  let out = (data) => process.stdout.write(data);
  const mp = await loadMicroPython({ stdout: out, stderr: out, linebuffer: false });
  copyDirs(mp, dirs);
  mp.runPython("import sys\nsys.path[:0] = ['/']\n");
  try {
    // "#--- exec" lines split the script into separate top-level executions, like
    // separate REPL commands (the port's gc.collect() only frees garbage left by earlier
    // executions: it scans its linear-memory stack conservatively)
    for (const part of fs.readFileSync(script, "utf8").split(/^#--- exec$/m)) {
      mp.runPython(part);
    }
  } catch (error) {
    if (error.name !== "PythonError") throw error;
    process.stderr.write(error.message);
    process.exitCode = 1;
  }
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === "run") {
  await run(rest[0], rest.slice(1));
} else {
  process.stderr.write("usage: node mp.mjs run SCRIPT.py [DIR...]\n");
  process.exitCode = 2;
}
