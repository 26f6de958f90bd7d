// The virtual fob's board: MicroPython's WebAssembly port (npm package
// @micropython/micropython-webassembly-pyscript) with a simulated SSD1306 OLED, an optional
// DS3231, a chip RTC and two buttons. hwtoken.fob.emulator starts it and speaks JSON lines
// over stdin/stdout:
//
//   in   {"op": "repl", "data": BASE64}       bytes a host wrote to the serial port
//        {"op": "press", "id", "button": "a"|"b", "long": bool, "wait_ms"}
//        {"op": "heap", "id"} | {"op": "shift_rtc", "id", "seconds"} | {"op": "power", "id"}
//        {"op": "stop", "id"}                 (or stdin closing): save the flash, exit
//   out  {"ev": "repl", "data": BASE64}       what the board wrote to its serial port
//        {"ev": "frame", "ram": BASE64, "on", "contrast", "n"}   the OLED's RAM changed
//        {"ev": "state", "running": bool}      the fob's main loop runs, or the REPL has the input
//        {"ev": "ready"} | {"id", "ok": true, ...} | {"id", "ok": false, "error"}
//
// The WebAssembly port runs Python on the JavaScript thread and its time.sleep_ms() spins:
// a `while True` main loop would never let a byte in. So the board runs main.py's
// `app.run()` the way that loop does, one turn at a time: app.start() at boot, then the
// fob's step() every 20 ms from a timer. A Ctrl-C from the host stops it like a
// KeyboardInterrupt; a soft reset (Ctrl-D) forgets every imported module and global, as a
// board's does, and boots again; the raw REPL is the port's own, with raw-paste mode added
// (mpremote drives it unchanged, as a current board). One interpreter serves the board's
// whole life: the port's JavaScript proxies live in globals, so a second interpreter in
// this process would corrupt the first.
// For the same reason no Python object is held from JavaScript: the fob lives in the
// global _fob, and values come back as strings and numbers (py(), pyValue()).
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { pathToFileURL } from "node:url";

const cfg = JSON.parse(process.argv[2]);
const { loadMicroPython } = await import(pathToFileURL(cfg.micropython).href);
const SHIM = fs.readFileSync(cfg.machine);
const STEP_MS = 20;
const DEBOUNCE_MS = 60;  // firmware/buttons.py debounces 30 ms: hold and release for twice that
const SYSTEM_DIRS = new Set(["tmp", "home", "dev", "proc"]);  // Emscripten's, not the flash

function send(doc) {
  process.stdout.write(JSON.stringify(doc) + "\n");
}

const nowS = () => Math.floor(Date.now() / 1000);

function civil(t) {  // unix time -> [y, mo, d, weekday (0 = Monday), h, mi, s]
  const d = new Date(t * 1000);
  return [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), (d.getUTCDay() + 6) % 7,
    d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()];
}

const bcd = (v) => ((Math.floor(v / 10) << 4) | (v % 10));
const unbcd = (v) => (v >> 4) * 10 + (v & 15);

// -- the simulated hardware (outlives every interpreter, like the real chips) -------------
class SSD1306 {
  constructor() { this.powerOn(); }

  powerOn() {
    this.ram = new Uint8Array(1024);
    this.on = false;
    this.contrast = 0x7F;
    this.args = [];
    this.cols = [0, 127];
    this.pages = [0, 7];
    this.ptr = 0;
    this.frames = 0;
  }

  command(c) {
    this.args.push(c);
    const op = this.args[0];
    const need = { 0x21: 3, 0x22: 3, 0x81: 2, 0x20: 2, 0xA8: 2, 0xD3: 2, 0xDA: 2, 0xD5: 2,
      0xD9: 2, 0xDB: 2, 0x8D: 2 }[op] || 1;
    if (this.args.length < need) return;
    const a = this.args;
    this.args = [];
    if (op === 0xAE || op === 0xAF) {
      this.on = op === 0xAF;
      this.changed();
    } else if (op === 0x81) {
      this.contrast = a[1];
      this.changed();
    } else if (op === 0x21) {
      this.cols = [a[1] & 127, a[2] & 127];
      this.ptr = 0;
    } else if (op === 0x22) {
      this.pages = [a[1] & 7, a[2] & 7];
      this.ptr = 0;
    }
  }

  write(data) {  // one I2C transaction: control byte(s), then commands or display data
    let i = 0;
    while (i < data.length) {
      const control = data[i];
      if (control === 0x80) {  // one command byte, then another control byte
        this.command(data[i + 1]);
        i += 2;
      } else if (control === 0x00) {  // the rest are commands
        for (const c of data.subarray(i + 1)) this.command(c);
        return;
      } else if (control === 0x40) {  // the rest are display data
        this.data(data.subarray(i + 1));
        return;
      } else {
        return;
      }
    }
  }

  data(bytes) {
    const [c0, c1] = this.cols;
    const [p0, p1] = this.pages;
    const width = c1 - c0 + 1;
    for (const b of bytes) {
      const page = p0 + Math.floor(this.ptr / width);
      if (page <= p1) this.ram[page * 128 + c0 + (this.ptr % width)] = b;
      this.ptr += 1;
    }
    this.changed();
  }

  changed() {
    this.frames += 1;
    send({ ev: "frame", ram: Buffer.from(this.ram).toString("base64"), on: this.on,
      contrast: this.contrast, n: this.frames });
  }
}

class DS3231 {  // time registers 0x00-0x06 in BCD, status 0x0F with the oscillator-stop flag
  constructor() {
    this.offset = 0;
    this.regs = new Uint8Array(19);
    this.regs[0x0F] = 0x80;  // a new module: the oscillator stopped, the time means nothing
  }

  read(reg, n) {
    const [y, mo, d, wd, h, mi, s] = civil(nowS() + this.offset);
    this.regs.set([bcd(s), bcd(mi), bcd(h), wd + 1, bcd(d), bcd(mo), bcd(y - 2000)], 0);
    return this.regs.slice(reg, reg + n);
  }

  write(data) {  // [register, bytes...]
    const reg = data[0];
    const bytes = data.subarray(1);
    if (reg === 0 && bytes.length >= 7) {
      const [s, mi, h, , d, mo, y] = Array.from(bytes.subarray(0, 7), unbcd);
      this.offset = Date.UTC(2000 + y, mo - 1, d, h, mi, s) / 1000 - nowS();
    } else {
      this.regs.set(bytes.subarray(0, 19 - reg), reg);
    }
  }
}

const RTC_AT_POWER_ON = Date.UTC(2021, 0, 1) / 1000;  // an RP2040 after power-up
const hw = {
  levels: new Map(),
  oled: new SSD1306(),
  ds3231: cfg.ds3231 ? new DS3231() : null,
  rtcOffset: RTC_AT_POWER_ON - nowS(),
  txn: [],
  device(addr) {
    if (addr === cfg.oled_addr) return { write: (d) => this.oled.write(d) };
    if (addr === 0x68 && this.ds3231) return this.ds3231;
    return null;
  },
  powerCycle() {
    this.levels.clear();
    this.oled.powerOn();
    this.rtcOffset = RTC_AT_POWER_ON - nowS();  // the DS3231 has its battery: it keeps counting
  },
};

let mp = null;  // the board's interpreter
const heap = () => mp._module;

function bytesAt(ptr, n) {  // n bytes of the interpreter's memory
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = heap().getValue(ptr + i, "i8") & 255;
  return out;
}

const fobboard = {  // what machine.py calls
  pin_init(id, mode, pull) {
    if (!hw.levels.has(id)) hw.levels.set(id, pull === 1 ? 1 : 0);
  },
  pin_read: (id) => hw.levels.get(id) ?? 0,
  pin_write(id, v) { hw.levels.set(id, v ? 1 : 0); },
  i2c_scan() {
    return [cfg.oled_addr, ...(hw.ds3231 ? [0x68] : [])].sort((a, b) => a - b).join(",");
  },
  i2c_write(addr, ptr, n, last) {
    const dev = hw.device(addr);
    if (!dev) { hw.txn = []; return 19; }
    hw.txn.push(bytesAt(ptr, n));
    if (last) {
      const all = Buffer.concat(hw.txn);
      hw.txn = [];
      dev.write(new Uint8Array(all));
    }
    return 0;
  },
  i2c_write_mem(addr, reg, ptr, n) {
    const dev = hw.device(addr);
    if (!dev) return 19;
    dev.write(new Uint8Array([reg, ...bytesAt(ptr, n)]));
    return 0;
  },
  i2c_read_mem(addr, reg, n) {
    const dev = hw.device(addr);
    if (!dev || !dev.read) return null;
    return Buffer.from(dev.read(reg, n)).toString("hex");
  },
  rtc_get() {
    const [y, mo, d, wd, h, mi, s] = civil(nowS() + hw.rtcOffset);
    return [y, mo, d, wd, h, mi, s, 0].join(",");
  },
  rtc_set(y, mo, d, h, mi, s) {
    hw.rtcOffset = Date.UTC(y, mo - 1, d, h, mi, s) / 1000 - nowS();
  },
  unique_id: () => "e6614103e7452d2f",
};

// -- the flash: the interpreter's files, kept in cfg.flash on the host -------------------
function flashFiles() {  // path -> bytes of every file on the board's flash
  const files = new Map();
  const walk = (dir) => {
    for (const name of mp.FS.readdir(dir)) {
      if (name === "." || name === ".." || (dir === "/" && SYSTEM_DIRS.has(name))) continue;
      const full = (dir === "/" ? "" : dir) + "/" + name;
      if (mp.FS.isDir(mp.FS.stat(full).mode)) walk(full);
      else files.set(full, mp.FS.readFile(full));
    }
  };
  walk("/");
  return files;
}

const exists = (p) => mp.FS.analyzePath(p).exists;

function loadFlashDir() {  // cfg.flash -> the interpreter's files
  const walk = (dir, rel) => {
    for (const name of fs.readdirSync(dir)) {
      if (name.startsWith(".")) continue;
      const full = path.join(dir, name);
      const st = fs.lstatSync(full);
      if (st.isDirectory()) {
        mp.FS.mkdirTree(rel + "/" + name);
        walk(full, rel + "/" + name);
      } else if (st.isFile()) {
        mp.FS.writeFile(rel + "/" + name, fs.readFileSync(full));
      }
    }
  };
  if (cfg.flash) walk(cfg.flash, "");
}

function saveFlashDir() {  // the interpreter's files -> cfg.flash (0600, written atomically)
  if (!cfg.flash || !mp) return;
  const wanted = new Set();
  for (const [rel, data] of flashFiles()) {
    const dest = path.join(cfg.flash, rel);
    wanted.add(dest);
    fs.mkdirSync(path.dirname(dest), { recursive: true, mode: 0o700 });
    let same = false;
    try { same = Buffer.compare(fs.readFileSync(dest), Buffer.from(data)) === 0; } catch { }
    if (same) continue;
    const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.tmp`);
    fs.writeFileSync(tmp, data, { mode: 0o600 });
    fs.renameSync(tmp, dest);
  }
  const prune = (dir) => {
    for (const name of fs.readdirSync(dir)) {
      if (name.startsWith(".")) continue;
      const full = path.join(dir, name);
      const st = fs.lstatSync(full);
      if (st.isDirectory()) {
        prune(full);
        if (fs.readdirSync(full).length === 0) fs.rmdirSync(full);
      } else if (st.isFile() && !wanted.has(full)) {
        fs.unlinkSync(full);
      }
    }
  };
  prune(cfg.flash);
}

// -- the serial port ---------------------------------------------------------------------
let pending = [];
let flushing = false;
let muted = false;
let captured = null;  // output of the REPL character being processed

function flush() {
  flushing = false;
  if (pending.length) send({ ev: "repl", data: Buffer.from(pending).toString("base64") });
  pending = [];
}

function out(bytes) {  // what the board writes to its serial port, sent in batches
  if (captured) captured.push(...bytes);
  if (muted) return;
  pending.push(...bytes);
  if (!flushing) {
    flushing = true;
    setImmediate(flush);
  }
}

const text = (s) => out(Buffer.from(s, "latin1"));

// -- the board's life: boot, the fob's main loop, the REPL -------------------------------
let mode = "off";  // "main": the fob's loop runs; "repl": the REPL has the input
let timer = null;  // the next step of the fob (the global _fob) in main.py's loop
let lastStep = 0;  // when the latest step began (ms)
const waiters = new Set();

function setMode(m) {
  mode = m;
  send({ ev: "state", running: m === "main" });
  wake();
}

function wake() {
  for (const w of [...waiters]) w();
}

function until(test, ms) {  // resolves true when test() holds (checked at every event), false at ms
  return new Promise((resolve) => {
    if (test()) { resolve(true); return; }
    const done = (ok) => { waiters.delete(check); clearTimeout(t); resolve(ok); };
    const check = () => { if (test()) done(true); };
    const t = setTimeout(() => done(false), ms);
    waiters.add(check);
  });
}

function pythonError(e) {
  if (e?.name !== "PythonError") throw e;
  text(e.message.replace(/\r?\n/g, "\r\n"));
}

function py(code) {
  mp.runPython(code);
}

function pyValue(expr) {  // a str, int, bool or None computed by the board
  mp.runPython(`_hwtoken_value = ${expr}`);
  const v = mp.globals.get("_hwtoken_value");
  mp.runPython("del _hwtoken_value");
  return v;
}

function toRepl() {
  clearTimeout(timer);
  mp.replInit();
  setMode("repl");
}

function stopMain() {  // main.py's loop ends: its fob is garbage, as after a KeyboardInterrupt
  clearTimeout(timer);
  try { py("_fob = None\ndel _fob"); } catch (e) { pythonError(e); }
}

function step() {
  if (mode !== "main") return;
  lastStep = Date.now();
  try {
    py("_fob.step()");
  } catch (e) {
    pythonError(e);
    stopMain();
    toRepl();
    return;
  }
  wake();
  timer = setTimeout(step, STEP_MS);
}

function runMain() {
  if (!exists("/main.py")) { toRepl(); return; }  // no main.py: the REPL, as after flashing
  const source = Buffer.from(mp.FS.readFile("/main.py")).toString("utf8");
  try {
    if (/\bapp\.run\(\)/.test(source) && exists("/app.py")) {
      py("import app\n_fob = app.start()");
    } else {
      py(source);  // some other program: run as it is
      toRepl();
      return;
    }
  } catch (e) {
    pythonError(e);
    toRepl();
    return;
  }
  setMode("main");
  timer = setTimeout(step, STEP_MS);
}

let keep = [];  // sys.modules at power-on (machine, fobboard): a soft reset keeps them

async function powerOn() {
  mp = await loadMicroPython({ stdout: out, stderr: out, linebuffer: false });
  mp.registerJsModule("fobboard", fobboard);
  loadFlashDir();
  // `machine` is built into a board's firmware, not a file on its flash: import it from a
  // directory that is gone again before anything else runs
  mp.FS.mkdir("/.machine");
  mp.FS.writeFile("/.machine/machine.py", SHIM);
  py("import sys\nsys.path.insert(0, '/.machine')\nimport machine\nsys.path.pop(0)\ndel sys");
  mp.FS.unlink("/.machine/machine.py");
  mp.FS.rmdir("/.machine");
  keep = JSON.parse(pyValue("__import__('json').dumps(list(__import__('sys').modules))"));
  runMain();
}

function reboot(kind) {  // "soft" (from the friendly REPL), "soft-raw" or "power"
  mode = "booting";
  stopMain();
  if (kind === "power") {  // a power cycle also leaves the raw REPL
    muted = true;
    mp.replProcessChar(2);
    muted = false;
  } else {
    text("MPY: soft reboot\r\n");
  }
  saveFlashDir();
  py(`def _hwtoken_reset(keep):
    import sys
    for m in list(sys.modules):
        if m not in keep:
            del sys.modules[m]
    g = globals()
    for k in list(g):
        if k != "__name__":
            del g[k]
_hwtoken_reset(${JSON.stringify(keep)})`);
  py("import gc\ngc.collect()\ndel gc");
  if (kind === "soft-raw") {  // a soft reset from the raw REPL stays there; main.py waits
    mp.replInit();  // (the REPL's mode outlives a reset: this prints the raw REPL's banner)
    setMode("repl");
    return;
  }
  runMain();
}

// mpremote's raw-paste mode (\x05 A \x01 in the raw REPL): the board answers "R\x01" and a
// window size, asks for another window with \x01 each time one has arrived, acknowledges
// the end (\x04) and answers as the raw REPL does: output, \x04, errors, \x04, ">". The
// port's own REPL has no raw-paste mode (it would need a blocking stdin), so it is here.
let held = [];  // bytes that may be the start of a raw-paste request
let paste = null;  // the code of a raw paste being received
const RAW_PASTE = [0x05, 0x41, 0x01];
const PASTE_WINDOW = 4096;

function runPasted(code) {
  text("\x04");
  let errors = "";
  try {
    py(Buffer.from(code).toString("utf8"));
  } catch (e) {
    if (e?.name !== "PythonError") throw e;
    if (e.type === "SystemExit") {  // as in the raw REPL: a soft reset
      text("\x04\x04");
      reboot("soft-raw");
      return;
    }
    errors = e.message;
  }
  text("\x04" + errors + "\x04>");
}

async function feed(byte) {
  if (mode === "main") {
    if (byte === 0x03) {  // Ctrl-C: a KeyboardInterrupt in main.py's loop
      stopMain();
      text("Traceback (most recent call last):\r\n  File \"main.py\", line 4, in <module>\r\n"
        + "KeyboardInterrupt: \r\n");
      toRepl();
    }
    return;  // anything else waits in a board's input buffer: nothing reads it
  }
  if (mode !== "repl") return;
  captured = [];
  const reset = mp.replProcessChar(byte);
  const said = Buffer.from(captured).toString("latin1");
  captured = null;
  if (reset) reboot(said.startsWith("OK") ? "soft-raw" : "soft");
}

async function receive(byte) {
  if (paste) {
    if (byte === 0x04) {
      const code = paste.code;
      paste = null;
      runPasted(code);
    } else {
      paste.code.push(byte);
      if (paste.code.length % PASTE_WINDOW === 0) text("\x01");
    }
    return;
  }
  if (mode === "repl" && byte === RAW_PASTE[held.length]) {
    held.push(byte);
    if (held.length === RAW_PASTE.length) {
      held = [];
      paste = { code: [] };
      text("R\x01" + String.fromCharCode(PASTE_WINDOW & 255, PASTE_WINDOW >> 8));
    }
    return;
  }
  const before = held;
  held = [];
  for (const b of before) await feed(b);
  if (mode === "repl" && byte === RAW_PASTE[0]) {
    held.push(byte);
    return;
  }
  await feed(byte);
}

// -- requests from the host --------------------------------------------------------------
async function press(req) {
  if (!await until(() => mode === "main", req.wait_ms ?? 5000)) {
    throw new Error("the fob's main loop is not running (a host holds its REPL, or no "
      + "firmware is deployed: run hwtoken fob deploy)");
  }
  const setting = (expr) => pyValue(`__import__('config').${expr}`);
  const pin = setting(`pins().get('button_${req.button === "b" ? "b" : "a"}')`);
  if (pin === null || pin === undefined) {
    throw new Error(`the fob has no button ${req.button.toUpperCase()} (its setting `
      + `button_${req.button} is none)`);
  }
  const woke = !hw.oled.on || hw.oled.contrast < setting("BRIGHTNESS");
  const holdMs = req.long ? setting("LONG_PRESS_MS") + 2 * DEBOUNCE_MS : 2 * DEBOUNCE_MS;
  const stepped = (t) => until(() => mode !== "main" || lastStep >= t, 5000);
  const down = Date.now();
  hw.levels.set(pin, 0);
  await stepped(down + holdMs);  // held until the loop has seen it down that long
  const up = Date.now();
  hw.levels.set(pin, 1);
  await stepped(up + DEBOUNCE_MS);  // and up: the event is handled, the screen redrawn
  if (mode !== "main") throw new Error("the fob's main loop stopped during the press");
  return { button: req.button, pin, long: !!req.long, woke, frame: hw.oled.frames };
}

function heapUse() {  // between two steps; collected in one execution, measured in the next
  py("__import__('gc').collect()");
  const [alloc, free] = pyValue("'%d %d' % (__import__('gc').mem_alloc(), "
    + "__import__('gc').mem_free())").split(" ").map(Number);
  return { mem_alloc: alloc, mem_free: free, running: mode === "main" };
}

let queue = Promise.resolve();
let stopping = false;

function stop() {
  if (stopping) return;
  stopping = true;
  queue = queue.then(() => {
    saveFlashDir();
    process.exit(0);
  });
}

function handle(msg) {
  if (msg.op === "repl") {
    const bytes = Buffer.from(msg.data, "base64");
    queue = queue.then(async () => { for (const b of bytes) await receive(b); });
    return;
  }
  if (msg.op === "stop") {
    stop();
    return;
  }
  const ops = {
    press: () => press(msg),
    heap: async () => heapUse(),
    shift_rtc: async () => { hw.rtcOffset += msg.seconds; return {}; },
    power: async () => {  // unplugged and plugged in again
      await (queue = queue.then(() => { hw.powerCycle(); reboot("power"); }));
      return {};
    },
  };
  const op = ops[msg.op];
  const run = op ? op() : Promise.reject(new Error(`unknown request ${msg.op}`));
  run.then((res) => send({ id: msg.id, ok: true, ...res }),
    (e) => send({ id: msg.id, ok: false, error: e.message }));
}

await powerOn();
flush();  // the boot's output first: nobody is connected yet, so it is lost, as on a board
send({ ev: "ready", version: "1.27.0", oled_addr: cfg.oled_addr, ds3231: !!hw.ds3231 });
const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  try {
    handle(JSON.parse(line));
  } catch (e) {
    send({ ev: "log", error: String(e) });
  }
});
lines.on("close", stop);
