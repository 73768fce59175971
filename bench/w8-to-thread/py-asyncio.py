# to_thread round trip on asyncio: BENCH_N calls of an empty function through
# asyncio.to_thread, 4 in flight. Metric: us/call.
import asyncio, os, sys, time

N = int(os.environ.get("BENCH_N", "10000"))

def empty(x):
    return x

async def main():
    sem = asyncio.Semaphore(4)
    async def one(i):
        async with sem:
            return await asyncio.to_thread(empty, i)
    t0 = time.perf_counter()
    r = await asyncio.gather(*(one(i) for i in range(N)))
    dt = time.perf_counter() - t0
    if r != list(range(N)):
        print("FAIL", file=sys.stderr); sys.exit(1)
    print("RESULT w8-to-thread py-asyncio us_per_call=%.2f wall_s=%.4f n=%d" % (dt * 1e6 / N, dt, N))

asyncio.run(main())
