// The platform's E2B code in JavaScript, unmodified, against swissbox: E2B_API_URL,
// E2B_SANDBOX_URL and E2B_API_KEY point at an agent or a scheduler. One line per check;
// exits non-zero at the first failure. Run with NODE_PATH at the pinned SDKs' node_modules.
import { createRequire } from 'node:module';
const require = createRequire(process.env.E2B_NODE_MODULES + '/');
const { Sandbox } = require('@e2b/code-interpreter');

function check(name, cond, detail = '') {
  if (!cond) {
    console.log(`FAIL ${name}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
    process.exit(1);
  }
  console.log(`ok ${name}`);
}

const t0 = Date.now();
const sbx = await Sandbox.create();
check('create', sbx.sandboxId.startsWith('sbx-'), sbx.sandboxId);
console.log(`  create + first runCode: see below`);
let ex = await sbx.runCode('x = 41');
console.log(`  create + first runCode took ${Date.now() - t0} ms`);
ex = await sbx.runCode('x + 1');
check('runCode state and result', ex.text === '42', ex.toJSON());
ex = await sbx.runCode('1 / 0');
check('runCode exception', ex.error && ex.error.name === 'ZeroDivisionError', ex.error);
ex = await sbx.runCode('const n = 6; n * 7', { language: 'js' });
check('runCode javascript', ex.text === '42', ex.toJSON());
ex = await sbx.runCode('const n = 7; n * 6', { language: 'js' });
check('const redeclared in a later run', ex.text === '42', ex.toJSON());
const seen = [];
await sbx.runCode('import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.4)',
                  { onStdout: () => seen.push(Date.now()) });
check('onStdout before the run ends', seen.length >= 3 && Date.now() - seen[0] > 500, seen);

const r = await sbx.commands.run('echo out; echo err >&2');
check('commands.run', r.stdout === 'out\n' && r.stderr === 'err\n' && r.exitCode === 0, r);
try {
  await sbx.commands.run('exit 3');
  check('exit code', false, 'no error');
} catch (e) {
  check('exit code', e.exitCode === 3, String(e));
}
const bg = await sbx.commands.run('sleep 60', { background: true });
check('background killed', await sbx.commands.kill(bg.pid));

await sbx.files.write('/home/user/a.txt', 'data');
check('files write/read', (await sbx.files.read('/home/user/a.txt')) === 'data');
check('files list', (await sbx.files.list('/home/user')).some((e) => e.name === 'a.txt'));
check('files exists', await sbx.files.exists('/home/user/a.txt'));
await sbx.files.remove('/home/user/a.txt');
check('files remove', !(await sbx.files.exists('/home/user/a.txt')));
const big = Buffer.alloc(20 << 20, 7);
await sbx.files.write('big.bin', new Blob([big]));
const back = Buffer.from(await sbx.files.read('big.bin', { format: 'bytes' }));
check('a 20 MB file both ways', back.equals(big), back.length);

// files.watchDir: changes streamed to the callback as they happen, then stopped.
await sbx.files.makeDir('/home/user/watched');
const changes = [];
const watch = await sbx.files.watchDir('/home/user/watched', (e) => changes.push(`${e.type} ${e.name}`));
await sbx.commands.run('cd /home/user/watched && echo hi > f && mv f g');
for (let i = 0; i < 100 && !changes.includes('rename f'); i++) await new Promise((r) => setTimeout(r, 100));
const wanted = ['create f', 'write f', 'rename f', 'create g'];
check('files.watchDir', wanted.every((w) => changes.includes(w)), changes);
await watch.stop();

const listed = await Sandbox.list().nextItems();
check('list', listed.some((s) => s.sandboxId === sbx.sandboxId));
const again = await Sandbox.connect(sbx.sandboxId);
check('connect keeps the state', (await again.runCode('x')).text === '41');
await sbx.setTimeout(600_000);
check('kill', await sbx.kill());
check('kill again is false', (await Sandbox.kill(sbx.sandboxId)) === false);
