// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ArbMathProbe
/// @notice Test-only (tests/chain/test_arb_math_onchain.py): asks the real deployed Uniswap
/// contracts, many cases per eth_call, what engine/arb's integer math predicts.  Every case runs
/// in a sub-call that always reverts (its result travels in the revert data), so a case never
/// changes the state the next case sees, and the eth_call as a whole changes nothing either.
/// Not compiled into contracts/build; never deployed outside the devnet.
contract ArbMathProbe {
    uint160 internal constant MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342;
    int24 internal constant MAX_TICK = 887272;
    // Solidity < 0.8 divides by zero with INVALID, which burns all the gas a call is given
    // (UniswapV2Library.getAmountIn when amountOut == reserveOut): cap the V2 calls
    uint256 internal constant ROUTER_GAS = 300_000;
    uint256 internal constant PAIR_GAS = 1_000_000;

    /// true while a V3 swap must really be paid (a "pre" swap that moves the price)
    bool transient paying;

    // ------------------------------------------------------------------------------ V2

    struct V2Case {
        address pair;
        address router;     // a UniswapV2Router02 on the pair's factory
        bool zeroForOne;
        uint256 donate0;    // sent to the pair and sync()ed first: random reserves
        uint256 donate1;
        uint256 amountIn;   // sent to the pair before swap()
        uint256 amountOut;  // asked of swap(); also the router's getAmountsIn argument
    }

    /// Per case: abi.encode(reserve0, reserve1, abi.encode(routerOutOk, routerOut, routerInOk,
    /// routerIn), abi.encode(swapOk, received, swapRevertData)).
    function v2(V2Case[] calldata cs) external returns (bytes[] memory out) {
        out = new bytes[](cs.length);
        for (uint256 i = 0; i < cs.length; i++) {
            try this.v2One(cs[i]) {} catch (bytes memory d) { out[i] = d; }
        }
    }

    function v2One(V2Case calldata c) external {
        IV2Pair pair = IV2Pair(c.pair);
        (address t0, address t1) = (pair.token0(), pair.token1());
        if (c.donate0 > 0 || c.donate1 > 0) {
            if (c.donate0 > 0) require(IERC20(t0).transfer(c.pair, c.donate0), "probe: donate0");
            if (c.donate1 > 0) require(IERC20(t1).transfer(c.pair, c.donate1), "probe: donate1");
            pair.sync();
        }
        (uint112 r0, uint112 r1,) = pair.getReserves();
        (address tIn, address tOut) = c.zeroForOne ? (t0, t1) : (t1, t0);
        bytes memory quotes = _routerQuotes(c, tIn, tOut);
        bytes memory swapped = _swapV2(c, tIn, tOut);
        bytes memory res = abi.encode(uint256(r0), uint256(r1), quotes, swapped);
        assembly { revert(add(res, 32), mload(res)) }
    }

    function _routerQuotes(V2Case calldata c, address tIn, address tOut) internal view returns (bytes memory) {
        address[] memory path = new address[](2);
        (path[0], path[1]) = (tIn, tOut);
        bool okOut;
        uint256 rOut;
        try IV2Router(c.router).getAmountsOut{gas: ROUTER_GAS}(c.amountIn, path) returns (uint256[] memory a) {
            (okOut, rOut) = (true, a[1]);
        } catch {}
        bool okIn;
        uint256 rIn;
        try IV2Router(c.router).getAmountsIn{gas: ROUTER_GAS}(c.amountOut, path) returns (uint256[] memory a) {
            (okIn, rIn) = (true, a[0]);
        } catch {}
        return abi.encode(okOut, rOut, okIn, rIn);
    }

    function _swapV2(V2Case calldata c, address tIn, address tOut) internal returns (bytes memory) {
        if (c.amountIn > 0) require(IERC20(tIn).transfer(c.pair, c.amountIn), "probe: amountIn");
        uint256 before = IERC20(tOut).balanceOf(address(this));
        (bool ok, bytes memory err) = c.pair.call{gas: PAIR_GAS}(abi.encodeCall(
            IV2Pair.swap, (c.zeroForOne ? 0 : c.amountOut, c.zeroForOne ? c.amountOut : 0, address(this), "")));
        return abi.encode(ok, IERC20(tOut).balanceOf(address(this)) - before, err);
    }

    /// The router's pure UniswapV2Library math on arbitrary reserves: (ok, value) per case.
    function v2Library(address router, bool amountOut, uint256[3][] calldata args)
        external pure returns (bool[] memory ok, uint256[] memory value)
    {
        ok = new bool[](args.length);
        value = new uint256[](args.length);
        for (uint256 i = 0; i < args.length; i++) {
            uint256[3] calldata a = args[i];
            if (amountOut) {
                try IV2Router(router).getAmountOut{gas: ROUTER_GAS}(a[0], a[1], a[2]) returns (uint256 v) { (ok[i], value[i]) = (true, v); }
                catch {}
            } else {
                try IV2Router(router).getAmountIn{gas: ROUTER_GAS}(a[0], a[1], a[2]) returns (uint256 v) { (ok[i], value[i]) = (true, v); }
                catch {}
            }
        }
    }

    // ------------------------------------------------------------------------------ V3

    struct V3Case {
        bool preZeroForOne;   // a real, paid swap first when preAmount != 0: a random start state
        int256 preAmount;
        uint160 preLimit;
        bool zeroForOne;      // then the quoted swap (its callback reverts with the result)
        int256 amount;
        uint160 limit;
    }

    /// Per case: abi.encode(pre, main) where pre = "" or abi.encode(amount0, amount1, sqrtP,
    /// tick, liquidity) after the pre swap, and main = the same five words read inside the
    /// quoted swap's callback, or the pool's revert data.  A failing pre swap gives its revert
    /// data instead of abi.encode(pre, main).
    function v3(address pool, V3Case[] calldata cs) external returns (bytes[] memory out) {
        out = new bytes[](cs.length);
        for (uint256 i = 0; i < cs.length; i++) {
            try this.v3One(pool, cs[i]) {} catch (bytes memory d) { out[i] = d; }
        }
    }

    function v3One(address pool, V3Case calldata c) external {
        bytes memory pre;
        if (c.preAmount != 0) {
            paying = true;
            (int256 a0, int256 a1) = IV3Pool(pool).swap(address(this), c.preZeroForOne, c.preAmount, c.preLimit, "");
            paying = false;
            pre = _state(pool, a0, a1);
        }
        bytes memory main;
        try IV3Pool(pool).swap(address(this), c.zeroForOne, c.amount, c.limit, "") {
            main = "";  // unreachable: the callback always reverts
        } catch (bytes memory d) {
            main = d;
        }
        bytes memory res = abi.encode(pre, main);
        assembly { revert(add(res, 32), mload(res)) }
    }

    function uniswapV3SwapCallback(int256 amount0, int256 amount1, bytes calldata) external {
        if (!paying) {
            // the pool has written slot0 and liquidity before calling back: read the new state
            bytes memory res = _state(msg.sender, amount0, amount1);
            assembly { revert(add(res, 32), mload(res)) }
        }
        if (amount0 > 0) require(IERC20(IV3Pool(msg.sender).token0()).transfer(msg.sender, uint256(amount0)), "probe: pay0");
        if (amount1 > 0) require(IERC20(IV3Pool(msg.sender).token1()).transfer(msg.sender, uint256(amount1)), "probe: pay1");
    }

    function _state(address pool, int256 a0, int256 a1) internal view returns (bytes memory) {
        (uint160 sqrtP, int24 tick,,,,,) = IV3Pool(pool).slot0();
        return abi.encode(a0, a1, sqrtP, tick, IV3Pool(pool).liquidity());
    }

    /// Non-zero tick bitmap words in [fromWord, toWord].
    function bitmap(address pool, int16 fromWord, int16 toWord)
        external view returns (int16[] memory pos, uint256[] memory words)
    {
        uint256 n = 0;
        int16[] memory p = new int16[](uint256(int256(toWord) - int256(fromWord) + 1));
        uint256[] memory w = new uint256[](p.length);
        for (int256 i = fromWord; i <= toWord; i++) {
            uint256 word = IV3Pool(pool).tickBitmap(int16(i));
            if (word != 0) {
                (p[n], w[n]) = (int16(i), word);
                n++;
            }
        }
        pos = new int16[](n);
        words = new uint256[](n);
        for (uint256 i = 0; i < n; i++) (pos[i], words[i]) = (p[i], w[i]);
    }

    function tickNets(address pool, int24[] calldata ticks)
        external view returns (int128[] memory nets, bool[] memory initialized)
    {
        nets = new int128[](ticks.length);
        initialized = new bool[](ticks.length);
        for (uint256 i = 0; i < ticks.length; i++) {
            (, int128 net,,,,,, bool init) = IV3Pool(pool).ticks(ticks[i]);
            (nets[i], initialized[i]) = (net, init);
        }
    }

    // ------------------------------------------------------------------------------ TickMath
    // Through a real, uninitialised pool (the real bytecode's TickMath):
    //   getTickAtSqrtRatio(p)   = slot0.tick after initialize(p)
    //   getSqrtRatioAtTick(t)   = p - amount1 of mint(t, MAX_TICK, 2**96) at price p = MAX_SQRT_RATIO - 1,
    //                             because amount1 = ceil(2**96 * (p - ratio(t)) / 2**96) exactly

    /// Per price: abi.encode(tick) or the pool's revert data.
    function tickAtSqrtRatio(address freshPool, uint160[] calldata prices) external returns (bytes[] memory out) {
        out = new bytes[](prices.length);
        for (uint256 i = 0; i < prices.length; i++) {
            try this.initOne(freshPool, prices[i]) {} catch (bytes memory d) { out[i] = d; }
        }
    }

    function initOne(address pool, uint160 price) external {
        IV3Pool(pool).initialize(price);
        (, int24 tick,,,,,) = IV3Pool(pool).slot0();
        bytes memory res = abi.encode(tick);
        assembly { revert(add(res, 32), mload(res)) }
    }

    /// Per tick: abi.encode(amount0, amount1) owed by mint(tick, MAX_TICK, 2**96), or the revert data.
    function sqrtRatioAtTick(address freshPool, int24[] calldata ticks) external returns (bytes[] memory out) {
        out = new bytes[](ticks.length);
        for (uint256 i = 0; i < ticks.length; i++) {
            try this.mintOne(freshPool, ticks[i]) {} catch (bytes memory d) { out[i] = d; }
        }
    }

    function mintOne(address pool, int24 tick) external {
        IV3Pool(pool).initialize(MAX_SQRT_RATIO - 1);
        IV3Pool(pool).mint(address(this), tick, MAX_TICK, uint128(1) << 96, "");
        revert("probe: mint paid nothing");
    }

    function uniswapV3MintCallback(uint256 amount0, uint256 amount1, bytes calldata) external pure {
        bytes memory res = abi.encode(amount0, amount1);
        assembly { revert(add(res, 32), mload(res)) }
    }
}

interface IERC20 {
    function transfer(address, uint256) external returns (bool);
    function balanceOf(address) external view returns (uint256);
}

interface IV2Pair {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function getReserves() external view returns (uint112, uint112, uint32);
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
    function sync() external;
}

interface IV2Router {
    function getAmountsOut(uint256 amountIn, address[] calldata path) external view returns (uint256[] memory);
    function getAmountsIn(uint256 amountOut, address[] calldata path) external view returns (uint256[] memory);
    function getAmountOut(uint256 amountIn, uint256 reserveIn, uint256 reserveOut) external pure returns (uint256);
    function getAmountIn(uint256 amountOut, uint256 reserveIn, uint256 reserveOut) external pure returns (uint256);
}

interface IV3Pool {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function initialize(uint160 sqrtPriceX96) external;
    function slot0() external view returns (uint160, int24, uint16, uint16, uint16, uint8, bool);
    function liquidity() external view returns (uint128);
    function tickBitmap(int16) external view returns (uint256);
    function ticks(int24) external view returns (uint128, int128, uint256, uint256, int56, uint160, uint32, bool);
    function mint(address recipient, int24 tickLower, int24 tickUpper, uint128 amount, bytes calldata data)
        external returns (uint256, uint256);
    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96,
                  bytes calldata data) external returns (int256, int256);
}
