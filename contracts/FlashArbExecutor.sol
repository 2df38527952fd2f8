// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title FlashArbExecutor
/// @notice Borrows one token, runs an n-hop cycle over Uniswap V2 pairs and V3 pools that ends in
/// the same token, repays the lender and sends the profit to the owner; if the profit is below the
/// caller's minimum, the whole transaction reverts (only gas is lost).
///
/// Loan sources, each through the lender's real interface:
///   0 UNISWAP_V2  pair.swap(..., data) -> uniswapV2Call. If the lender is the route's first pool
///                 the loan *is* the first hop (classic flash swap): receive getAmountOut(amount)
///                 of hop 0's output first, run hops 1..n-1, pay `amount` of the route token
///                 last (the pair's K check is that of a plain swap); no fee beyond the swap fee.
///                 Otherwise the
///                 pair lends the route token and is repaid amount + fee in it (its K check
///                 enforces the fee).
///   1 UNISWAP_V3  pool.flash -> uniswapV3FlashCallback (fee = the pool's, reported by the pool)
///   2 BALANCER    Vault.flashLoan -> receiveFlashLoan (fee reported by the vault, 0 today)
///   3 AAVE        Pool.flashLoanSimple -> executeOperation (premium reported by the pool)
///
/// Safety: only the owner or an allow-listed sender may execute; every callback accepts only the
/// address this very transaction is calling at that moment (transient slots set before the call
/// and cleared after it), and loan callbacks also check that the loan was initiated by us.
/// Nothing stays in the contract: the whole balance of the route token goes to the owner.
contract FlashArbExecutor {
    uint8 internal constant KIND_V2 = 0;
    uint8 internal constant KIND_V3 = 1;

    uint8 internal constant LOAN_UNISWAP_V2 = 0;
    uint8 internal constant LOAN_UNISWAP_V3 = 1;
    uint8 internal constant LOAN_BALANCER = 2;
    uint8 internal constant LOAN_AAVE = 3;

    // TickMath.MIN_SQRT_RATIO + 1 and MAX_SQRT_RATIO - 1: no price limit on a V3 hop.
    uint160 internal constant MIN_SQRT_LIMIT = 4295128740;
    uint160 internal constant MAX_SQRT_LIMIT = 1461446703485210103287273052203988822378723970341;

    struct Hop {
        address pool;
        address tokenIn;
        address tokenOut;
        uint8 kind;      // 0 = Uniswap V2 pair, 1 = Uniswap V3 pool
        uint24 fee;      // V2: basis points the pair charges (30 for Uniswap V2); V3: unused
    }

    struct Loan {
        uint8 source;
        address lender;
        address token;   // the route's token (first tokenIn, last tokenOut)
        uint256 amount;  // the route's input
        uint256 fee;     // V2 lender not in the route: repay amount + fee; ignored otherwise
    }

    address public immutable owner;
    mapping(address => bool) public allowed;

    // The lender whose loan callback may call us, and the V3 pool whose swap callback may.
    address transient expectedLender;
    address transient expectedPool;
    uint256 transient routeOut; // the route's final amount, set inside the loan callback
    uint256 transient repaid;   // what went back to the lender, in the route's token

    /// token: the route's (profit) token; borrowed: loan.amount of loan.token; repaid and
    /// amountOut in the route's token; profit = what the owner received.
    event Executed(address indexed token, uint8 indexed source, address lender, uint256 borrowed,
                   uint256 repaid, uint256 amountOut, uint256 profit);
    event AllowedSet(address indexed who, bool allowed);

    error NotAuthorized();
    error BadCallback();
    error BadRoute();
    error InsufficientProfit(uint256 profit, uint256 minProfit);
    error LoanFailed();
    error TransferFailed();
    error PartialFill();
    error RouteShort(uint256 have, uint256 due); // the route produced less than the loan costs
    error Expired(uint256 blockNumber, uint256 deadlineBlock); // mined after its deadline block

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotAuthorized();
        _;
    }

    function setAllowed(address who, bool ok) external onlyOwner {
        allowed[who] = ok;
        emit AllowedSet(who, ok);
    }

    /// @notice Borrow, route, repay; revert unless profit >= minProfit and the block is at most
    /// deadlineBlock (0: no deadline). Returns the profit.
    function execute(Hop[] calldata hops, Loan calldata loan, uint256 minProfit, uint256 deadlineBlock)
        external
        returns (uint256 profit)
    {
        if (msg.sender != owner && !allowed[msg.sender]) revert NotAuthorized();
        // a transaction mined late trades on a state nobody priced: only gas is lost
        if (deadlineBlock != 0 && block.number > deadlineBlock) revert Expired(block.number, deadlineBlock);
        uint256 n = hops.length;
        if (n == 0) revert BadRoute();
        address token = hops[0].tokenIn;
        if (hops[n - 1].tokenOut != token) revert BadRoute();
        for (uint256 i = 1; i < n; ++i) {
            if (hops[i].tokenIn != hops[i - 1].tokenOut) revert BadRoute();
        }
        if (loan.token != token) revert BadRoute();
        uint256 start = _balance(token);
        bytes memory data = abi.encode(hops, loan);

        expectedLender = loan.lender;
        if (loan.source == LOAN_UNISWAP_V2) {
            _borrowV2(hops[0], loan, data);
        } else if (loan.source == LOAN_UNISWAP_V3) {
            bool isToken0 = IUniswapV3Pool(loan.lender).token0() == loan.token;
            IUniswapV3Pool(loan.lender).flash(
                address(this), isToken0 ? loan.amount : 0, isToken0 ? 0 : loan.amount, data);
        } else if (loan.source == LOAN_BALANCER) {
            address[] memory tokens = new address[](1);
            uint256[] memory amounts = new uint256[](1);
            tokens[0] = loan.token;
            amounts[0] = loan.amount;
            IBalancerVault(loan.lender).flashLoan(address(this), tokens, amounts, data);
        } else if (loan.source == LOAN_AAVE) {
            IAavePool(loan.lender).flashLoanSimple(address(this), loan.token, loan.amount, data, 0);
        } else {
            revert BadRoute();
        }
        expectedLender = address(0);

        uint256 end = _balance(token);
        // A lender that took more than the route produced leaves us below the start: revert.
        if (end < start) revert InsufficientProfit(0, minProfit);
        profit = end - start;
        if (profit < minProfit) revert InsufficientProfit(profit, minProfit);
        if (end > 0) _transfer(token, owner, end);
        emit Executed(token, loan.source, loan.lender, loan.amount, repaid, routeOut, profit);
        routeOut = 0;
        repaid = 0;
    }

    function _borrowV2(Hop calldata first, Loan calldata loan, bytes memory data) internal {
        IUniswapV2Pair pair = IUniswapV2Pair(loan.lender);
        if (loan.lender == first.pool) {
            // The loan is hop 0 itself: take its output now, pay its input in the callback.
            (uint112 r0, uint112 r1,) = pair.getReserves();
            bool zeroForOne = first.tokenIn < first.tokenOut;
            (uint256 rIn, uint256 rOut) = zeroForOne ? (uint256(r0), uint256(r1)) : (uint256(r1), uint256(r0));
            uint256 out = _v2AmountOut(loan.amount, rIn, rOut, first.fee);
            pair.swap(zeroForOne ? 0 : out, zeroForOne ? out : 0, address(this), data);
        } else {
            bool isToken0 = pair.token0() == loan.token;
            pair.swap(isToken0 ? loan.amount : 0, isToken0 ? 0 : loan.amount, address(this), data);
        }
    }

    // ---- loan callbacks ------------------------------------------------------------------

    function uniswapV2Call(address sender, uint256 amount0, uint256 amount1, bytes calldata data) external {
        _checkLender(sender);
        (Hop[] memory hops, Loan memory loan) = abi.decode(data, (Hop[], Loan));
        if (loan.source != LOAN_UNISWAP_V2) revert BadCallback();
        if (loan.lender == hops[0].pool) {
            // Hop 0's output (amount0 + amount1) is here; its input, loan.amount, is due.
            routeOut = _runHops(hops, 1, amount0 + amount1);
            repaid = loan.amount;
            _repay(loan.token, msg.sender, loan.amount);
        } else {
            if (amount0 + amount1 != loan.amount) revert BadCallback();
            routeOut = _runHops(hops, 0, loan.amount);
            repaid = loan.amount + loan.fee;
            _repay(loan.token, msg.sender, loan.amount + loan.fee);
        }
    }

    function uniswapV3FlashCallback(uint256 fee0, uint256 fee1, bytes calldata data) external {
        _checkLender(address(this));
        (Hop[] memory hops, Loan memory loan) = abi.decode(data, (Hop[], Loan));
        if (loan.source != LOAN_UNISWAP_V3) revert BadCallback();
        routeOut = _runHops(hops, 0, loan.amount);
        repaid = loan.amount + fee0 + fee1;
        _repay(loan.token, msg.sender, loan.amount + fee0 + fee1);
    }

    function receiveFlashLoan(
        address[] calldata tokens,
        uint256[] calldata amounts,
        uint256[] calldata feeAmounts,
        bytes calldata userData
    ) external {
        _checkLender(address(this));
        (Hop[] memory hops, Loan memory loan) = abi.decode(userData, (Hop[], Loan));
        if (loan.source != LOAN_BALANCER || tokens.length != 1 || tokens[0] != loan.token
            || amounts[0] != loan.amount) revert BadCallback();
        routeOut = _runHops(hops, 0, loan.amount);
        repaid = loan.amount + feeAmounts[0];
        // Balancer checks the vault's balance after this returns: repay by transfer.
        _repay(loan.token, msg.sender, loan.amount + feeAmounts[0]);
    }

    function executeOperation(
        address asset,
        uint256 amount,
        uint256 premium,
        address initiator,
        bytes calldata params
    ) external returns (bool) {
        _checkLender(initiator);
        (Hop[] memory hops, Loan memory loan) = abi.decode(params, (Hop[], Loan));
        if (loan.source != LOAN_AAVE || asset != loan.token || amount != loan.amount) revert BadCallback();
        routeOut = _runHops(hops, 0, loan.amount);
        repaid = amount + premium;
        // Aave pulls amount + premium with transferFrom after this returns.
        uint256 due = amount + premium;
        if (_balance(asset) < due) revert RouteShort(_balance(asset), due);
        _approve(asset, msg.sender, due);
        return true;
    }

    /// @dev Only the lender this transaction is calling, and only for a loan we initiated.
    function _checkLender(address initiator) internal view {
        address expected = expectedLender;
        if (expected == address(0) || msg.sender != expected || initiator != address(this)) {
            revert BadCallback();
        }
    }

    // ---- hops ----------------------------------------------------------------------------

    function _runHops(Hop[] memory hops, uint256 from, uint256 amount) internal returns (uint256) {
        for (uint256 i = from; i < hops.length; ++i) {
            Hop memory h = hops[i];
            if (h.pool == expectedLender) revert BadRoute(); // the lender is locked mid-loan
            amount = h.kind == KIND_V2 ? _swapV2(h, amount) : _swapV3(h, amount);
        }
        return amount;
    }

    function _swapV2(Hop memory h, uint256 amountIn) internal returns (uint256 out) {
        IUniswapV2Pair pair = IUniswapV2Pair(h.pool);
        (uint112 r0, uint112 r1,) = pair.getReserves();
        bool zeroForOne = h.tokenIn < h.tokenOut;
        (uint256 rIn, uint256 rOut) = zeroForOne ? (uint256(r0), uint256(r1)) : (uint256(r1), uint256(r0));
        out = _v2AmountOut(amountIn, rIn, rOut, h.fee);
        _transfer(h.tokenIn, h.pool, amountIn);
        pair.swap(zeroForOne ? 0 : out, zeroForOne ? out : 0, address(this), new bytes(0));
    }

    function _swapV3(Hop memory h, uint256 amountIn) internal returns (uint256 out) {
        if (h.kind != KIND_V3) revert BadRoute();
        bool zeroForOne = h.tokenIn < h.tokenOut;
        expectedPool = h.pool;
        (int256 a0, int256 a1) = IUniswapV3Pool(h.pool).swap(
            address(this), zeroForOne, int256(amountIn), zeroForOne ? MIN_SQRT_LIMIT : MAX_SQRT_LIMIT,
            abi.encode(h.tokenIn));
        expectedPool = address(0);
        (int256 paid, int256 got) = zeroForOne ? (a0, a1) : (a1, a0);
        // out of liquidity before the input was used up: the route is not what was priced
        if (uint256(paid) != amountIn) revert PartialFill();
        out = uint256(-got);
    }

    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) external {
        address expected = expectedPool;
        if (expected == address(0) || msg.sender != expected) revert BadCallback();
        address tokenIn = abi.decode(data, (address));
        int256 owed = amount0Delta > 0 ? amount0Delta : amount1Delta;
        if (owed > 0) _transfer(tokenIn, msg.sender, uint256(owed));
    }

    function _v2AmountOut(uint256 amountIn, uint256 rIn, uint256 rOut, uint256 feeBps)
        internal pure returns (uint256)
    {
        uint256 inWithFee = amountIn * (10000 - feeBps);
        return inWithFee * rOut / (rIn * 10000 + inWithFee);
    }

    // ---- tokens (tolerant of tokens that return nothing) ----------------------------------

    function _balance(address token) internal view returns (uint256) {
        return IERC20(token).balanceOf(address(this));
    }

    function _transfer(address token, address to, uint256 amount) internal {
        (bool ok, bytes memory ret) = token.call(abi.encodeWithSelector(IERC20.transfer.selector, to, amount));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed();
    }

    function _repay(address token, address lender, uint256 due) internal {
        uint256 have = _balance(token);
        if (have < due) revert RouteShort(have, due);
        _transfer(token, lender, due);
    }

    function _approve(address token, address spender, uint256 amount) internal {
        (bool ok, bytes memory ret) = token.call(abi.encodeWithSelector(IERC20.approve.selector, spender, amount));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed();
    }

    /// @notice Recover a token sent here by mistake (the contract should never hold any).
    function sweep(address token) external onlyOwner {
        uint256 b = _balance(token);
        if (b > 0) _transfer(token, owner, b);
    }
}

interface IERC20 {
    function balanceOf(address) external view returns (uint256);
    function transfer(address, uint256) external returns (bool);
    function approve(address, uint256) external returns (bool);
}

interface IUniswapV2Pair {
    function token0() external view returns (address);
    function getReserves() external view returns (uint112, uint112, uint32);
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
}

interface IUniswapV3Pool {
    function token0() external view returns (address);
    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96,
                  bytes calldata data) external returns (int256 amount0, int256 amount1);
    function flash(address recipient, uint256 amount0, uint256 amount1, bytes calldata data) external;
}

interface IBalancerVault {
    function flashLoan(address recipient, address[] memory tokens, uint256[] memory amounts,
                       bytes memory userData) external;
}

interface IAavePool {
    function flashLoanSimple(address receiverAddress, address asset, uint256 amount, bytes calldata params,
                             uint16 referralCode) external;
}
