// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title AaveStyleFlashLender
/// @notice Devnet/test stand-in for the Aave V3 Pool's `flashLoanSimple`, through the real
/// interface: it lends from its own balance, calls `executeOperation(asset, amount, premium,
/// initiator, params)` on the receiver, requires `true`, then pulls amount + premium with
/// transferFrom, as Aave's FlashLoanLogic does. The premium is Aave's: percentMul(amount, 5 bps),
/// i.e. (amount * 5 + 5000) / 10000, rounded half up. See contracts/README.md for why the real
/// Aave Pool is not deployed on the devnet.
contract AaveStyleFlashLender {
    uint256 public constant FLASHLOAN_PREMIUM_TOTAL = 5; // basis points, Aave V3's default
    uint256 internal constant PERCENTAGE_FACTOR = 1e4;
    uint256 internal constant HALF_PERCENTAGE_FACTOR = 0.5e4;

    event FlashLoan(address indexed target, address initiator, address indexed asset, uint256 amount,
                    uint256 premium, uint16 indexed referralCode);

    function flashLoanSimple(address receiverAddress, address asset, uint256 amount, bytes calldata params,
                             uint16 referralCode) external {
        uint256 premium = (amount * FLASHLOAN_PREMIUM_TOTAL + HALF_PERCENTAGE_FACTOR) / PERCENTAGE_FACTOR;
        require(IERC20Min(asset).transfer(receiverAddress, amount), "lender: transfer");
        require(
            IFlashLoanSimpleReceiver(receiverAddress).executeOperation(asset, amount, premium, msg.sender, params),
            "lender: INVALID_FLASHLOAN_EXECUTOR_RETURN");
        require(IERC20Min(asset).transferFrom(receiverAddress, address(this), amount + premium),
                "lender: repay");
        emit FlashLoan(receiverAddress, msg.sender, asset, amount, premium, referralCode);
    }
}

interface IERC20Min {
    function transfer(address, uint256) external returns (bool);
    function transferFrom(address, address, uint256) external returns (bool);
}

interface IFlashLoanSimpleReceiver {
    function executeOperation(address asset, uint256 amount, uint256 premium, address initiator,
                              bytes calldata params) external returns (bool);
}
