// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title DevPeriphery
/// @notice Devnet helper: adds Uniswap V3 tick-range liquidity (a V3 pool only mints through a
/// callback that pays it) and makes one-transaction swaps for the traffic generator. It pulls
/// tokens from its caller with transferFrom; it accepts a callback only from the pool it is
/// calling. Not the executor, not for any real chain.
contract DevPeriphery {
    uint160 internal constant MIN_SQRT_LIMIT = 4295128740;
    uint160 internal constant MAX_SQRT_LIMIT = 1461446703485210103287273052203988822378723970341;

    address transient expectedPool;
    address transient payer;

    function mintV3(address pool, int24 tickLower, int24 tickUpper, uint128 liquidity)
        external returns (uint256 amount0, uint256 amount1)
    {
        expectedPool = pool;
        payer = msg.sender;
        (amount0, amount1) = IV3Pool(pool).mint(msg.sender, tickLower, tickUpper, liquidity, "");
        expectedPool = address(0);
    }

    function uniswapV3MintCallback(uint256 owed0, uint256 owed1, bytes calldata) external {
        require(msg.sender == expectedPool && msg.sender != address(0), "DevPeriphery: caller");
        if (owed0 > 0) _pull(IV3Pool(msg.sender).token0(), msg.sender, owed0);
        if (owed1 > 0) _pull(IV3Pool(msg.sender).token1(), msg.sender, owed1);
    }

    /// Exact-input V3 swap without a price limit; returns the amount out.
    function swapV3(address pool, bool zeroForOne, uint256 amountIn, address recipient)
        external returns (uint256 amountOut)
    {
        expectedPool = pool;
        payer = msg.sender;
        (int256 a0, int256 a1) = IV3Pool(pool).swap(
            recipient, zeroForOne, int256(amountIn), zeroForOne ? MIN_SQRT_LIMIT : MAX_SQRT_LIMIT, "");
        expectedPool = address(0);
        amountOut = uint256(-(zeroForOne ? a1 : a0));
    }

    function uniswapV3SwapCallback(int256 d0, int256 d1, bytes calldata) external {
        require(msg.sender == expectedPool && msg.sender != address(0), "DevPeriphery: caller");
        if (d0 > 0) _pull(IV3Pool(msg.sender).token0(), msg.sender, uint256(d0));
        if (d1 > 0) _pull(IV3Pool(msg.sender).token1(), msg.sender, uint256(d1));
    }

    /// Exact-input V2 swap (fee in basis points); returns the amount out.
    function swapV2(address pair, address tokenIn, uint256 amountIn, uint256 feeBps, address recipient)
        external returns (uint256 amountOut)
    {
        (uint112 r0, uint112 r1,) = IV2Pair(pair).getReserves();
        bool zeroForOne = IV2Pair(pair).token0() == tokenIn;
        (uint256 rIn, uint256 rOut) = zeroForOne ? (uint256(r0), uint256(r1)) : (uint256(r1), uint256(r0));
        uint256 inWithFee = amountIn * (10000 - feeBps);
        amountOut = inWithFee * rOut / (rIn * 10000 + inWithFee);
        payer = msg.sender;
        _pull(tokenIn, pair, amountIn);
        IV2Pair(pair).swap(zeroForOne ? 0 : amountOut, zeroForOne ? amountOut : 0, recipient, "");
    }

    function _pull(address token, address to, uint256 amount) internal {
        require(IERC20Like(token).transferFrom(payer, to, amount), "DevPeriphery: transferFrom");
    }
}

interface IERC20Like {
    function transferFrom(address, address, uint256) external returns (bool);
}

interface IV3Pool {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function mint(address recipient, int24 tickLower, int24 tickUpper, uint128 amount, bytes calldata data)
        external returns (uint256, uint256);
    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96,
                  bytes calldata data) external returns (int256, int256);
}

interface IV2Pair {
    function token0() external view returns (address);
    function getReserves() external view returns (uint112, uint112, uint32);
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
}
