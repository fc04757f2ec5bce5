"""asyncio: many tasks exchanging items through queues, gather(), async
generators and nested awaits, all on one event loop with no real I/O
(sleep(0) yields). Coroutines suspend and resume constantly.
"""
import asyncio
import os

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
ITEMS = max(100, int(22800 * SCALE))
WORKERS = 20


async def produce(queue, n):
    for i in range(n):
        await queue.put(i)
        if i % 16 == 0:
            await asyncio.sleep(0)
    for _ in range(WORKERS):
        await queue.put(None)


async def transform(x):
    await asyncio.sleep(0)
    return x * 3 + 1


async def ticker(n):
    for i in range(n):
        yield i
        await asyncio.sleep(0)


async def worker(queue, results):
    total = 0
    while True:
        item = await queue.get()
        if item is None:
            break
        total += await transform(item)
    results.append(total)


async def fan_out(n):
    values = await asyncio.gather(*(transform(i) for i in range(n)))
    return sum(values)


async def main_async():
    queue = asyncio.Queue(maxsize=64)
    results = []
    workers = [asyncio.create_task(worker(queue, results)) for _ in range(WORKERS)]
    await produce(queue, ITEMS)
    await asyncio.gather(*workers)
    total = sum(results)
    for _ in range(10):
        total += await fan_out(ITEMS // 10)
    async for i in ticker(ITEMS):
        total += i
    return total


def main():
    return asyncio.run(main_async())


if __name__ == "__main__":
    import _timing
    _timing.run(main)
