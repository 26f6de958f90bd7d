// Runs MicroPython (the WebAssembly port, npm @micropython/micropython-webassembly-pyscript)
// under Node.js for the fob's tests.
//
//   node mp.mjs run SCRIPT.py [DIR...]   copy the .py files of each DIR into the
//                                        interpreter's filesystem root, run SCRIPT.py;
//                                        exit 1 with the traceback on stderr if it raises;
//                                        "#--- exec" lines split it into separate executions
//   node mp.mjs serve [DIR...]           serve the interactive REPL on 127.0.0.1 (an
//                                        ephemeral port, printed as "PORT n"), so that
//                                        mpremote's SerialTransport("socket://...") can
//                                        drive it like a board; ends when stdin closes
//
// The port's REPL does not implement raw-paste mode, so the bridge answers mpremote's
// raw-paste request (\x05 A \x01) with "R\x00" ("understood, not supported"), as older
// firmware does; mpremote then falls back to the plain raw REPL.
import fs from "node:fs";
import net from "node:net";
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

async function serve(dirs) {
  let client = null;
  const mp = await loadMicroPython({
    stdout: (data) => { if (client) client.write(Buffer.from(data)); },
    linebuffer: false,
  });
  copyDirs(mp, dirs);
  mp.runPython("import sys\nsys.path[:0] = ['/']\n");
  mp.replInit();

  let queue = Promise.resolve();
  let held = [];  // bytes that may be the start of the raw-paste request
  const RAW_PASTE = [0x05, 0x41, 0x01];

  function feed(byte) {
    queue = queue.then(async () => {
      const done = await mp.replProcessCharWithAsyncify(byte);
      if (done) {  // Ctrl-D in the friendly REPL: a board would soft-reset
        if (client) client.write("MPY: soft reboot\r\n");
        mp.replInit();
      }
    });
  }

  function receive(byte) {
    if (byte === RAW_PASTE[held.length]) {
      held.push(byte);
      if (held.length === RAW_PASTE.length) {
        held = [];
        queue = queue.then(() => { if (client) client.write(Buffer.from("R\x00", "latin1")); });
      }
      return;
    }
    for (const b of held) feed(b);
    held = [];
    if (byte === RAW_PASTE[0]) { held.push(byte); return; }
    feed(byte);
  }

  const server = net.createServer((sock) => {
    if (client) { sock.destroy(); return; }  // one connection at a time, like a serial port
    client = sock;
    sock.on("data", (data) => { for (const b of data) receive(b); });
    const drop = () => { if (client === sock) client = null; };
    sock.on("close", drop);
    sock.on("error", drop);
  });
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(`PORT ${server.address().port}\n`);
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("close", () => process.exit(0));
  process.stdin.resume();
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === "run") {
  await run(rest[0], rest.slice(1));
} else if (mode === "serve") {
  await serve(rest);
} else {
  process.stderr.write("usage: node mp.mjs run SCRIPT.py [DIR...] | serve [DIR...]\n");
  process.exitCode = 2;
}
