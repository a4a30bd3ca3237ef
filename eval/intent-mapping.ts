// How the public intent datasets' labels map onto Gleaner's taxonomy (src/domain.ts).
// One line per label; the comment says why where it is a judgement call. Labels mapped to
// `null` have no fair target and are left out of training and evaluation: forcing them
// would teach the model a boundary the taxonomy does not draw.
import type { Intent } from '../src/domain.ts'

/** banking77 (PolyAI, CC BY 4.0): 77 intents of a retail bank's customers. */
export const BANKING77_TO_INTENT: Readonly<Record<string, Intent | null>> = {
  Refund_not_showing_up: 'refund_request', // the customer is chasing money they are owed back
  request_refund: 'refund_request',
  activate_my_card: 'question', // how-to, nothing broken
  age_limit: 'question',
  apple_pay_or_google_pay: 'question',
  atm_support: 'question',
  automatic_top_up: 'question',
  balance_not_updated_after_bank_transfer: 'bug_report', // money not where it should be: something did not work
  balance_not_updated_after_cheque_or_cash_deposit: 'bug_report', // as above
  beneficiary_not_allowed: 'bug_report', // an operation the customer tried failed
  cancel_transfer: 'cancellation', // "a card, an order, a transfer": ending something they started
  card_about_to_expire: 'question',
  card_acceptance: 'question',
  card_arrival: 'question', // status of a card in the post; the taxonomy calls status questions "question"
  card_delivery_estimate: 'question',
  card_linking: 'question',
  card_not_working: 'bug_report',
  card_payment_fee_charged: 'complaint', // an unexpected fee: dissatisfied about a charge
  card_payment_not_recognised: 'complaint', // a charge they did not make: dissatisfied about a charge (urgency rules flag fraud)
  card_payment_wrong_exchange_rate: 'complaint', // says they were charged wrongly
  card_swallowed: 'bug_report', // the machine kept the card: a malfunction
  cash_withdrawal_charge: 'complaint', // "why was I charged for withdrawing cash": dissatisfied about a charge
  cash_withdrawal_not_recognised: 'complaint', // as card_payment_not_recognised
  change_pin: 'account_help', // managing credentials
  compromised_card: null, // a security report: wants the card blocked, investigated, replaced; no one intent fits
  contactless_not_working: 'bug_report',
  country_support: 'question',
  declined_card_payment: 'bug_report', // the taxonomy names failed payments as bug_report
  declined_cash_withdrawal: 'bug_report',
  declined_transfer: 'bug_report',
  direct_debit_payment_not_recognised: 'complaint', // as card_payment_not_recognised
  disposable_card_limits: 'question',
  edit_personal_details: 'account_help', // changing account details
  exchange_charge: 'question', // asks what the fee is, before any charge
  exchange_rate: 'question',
  exchange_via_app: 'question',
  extra_charge_on_statement: 'complaint', // an unexpected charge
  failed_transfer: 'bug_report',
  fiat_currency_support: 'question',
  get_disposable_virtual_card: 'purchase', // wants a new product; no charge, but "order" is the nearest act
  get_physical_card: 'purchase', // as above
  getting_spare_card: 'purchase', // as above
  getting_virtual_card: 'purchase', // as above
  lost_or_stolen_card: null, // wants the card blocked and replaced: cancellation and purchase at once, and urgent; left out
  lost_or_stolen_phone: null, // securing access after a theft: account_help or a security report; left out
  order_physical_card: 'purchase',
  passcode_forgotten: 'account_help',
  pending_card_payment: 'question', // a status question ("why is it still pending"); no failure yet
  pending_cash_withdrawal: 'question', // as above
  pending_top_up: 'question', // as above
  pending_transfer: 'question', // as above
  pin_blocked: 'account_help', // locked out of a credential
  receiving_money: 'question',
  'reverted_card_payment?': 'bug_report', // a payment that went through was reversed: something did not work
  supported_cards_and_currencies: 'question',
  terminate_account: 'cancellation',
  top_up_by_bank_transfer_charge: 'question', // asks about a fee
  top_up_by_card_charge: 'question', // asks about a fee
  top_up_by_cash_or_cheque: 'question',
  top_up_failed: 'bug_report',
  top_up_limits: 'question',
  top_up_reverted: 'bug_report', // as reverted_card_payment
  topping_up_by_card: 'question', // how-to, not a purchase decision
  transaction_charged_twice: 'complaint', // charged twice: dissatisfied about a charge (urgency rules make it high)
  transfer_fee_charged: 'complaint', // an unexpected fee
  transfer_into_account: 'question',
  transfer_not_received_by_recipient: 'bug_report', // a transfer that did not arrive: failed
  transfer_timing: 'question',
  unable_to_verify_identity: 'account_help', // verification fails: access to the account
  verify_my_identity: 'account_help', // verification is account access
  verify_source_of_funds: 'question', // asks what is required
  verify_top_up: 'question',
  virtual_card_not_working: 'bug_report',
  visa_or_mastercard: 'question',
  why_verify_identity: 'question', // asks why, no access problem
  wrong_amount_of_cash_received: 'complaint', // the ATM gave too little: dissatisfied about money lost
  wrong_exchange_rate_for_cash_withdrawal: 'complaint' // charged wrongly
}

/** Bitext customer-service sets (CDLA-Sharing 1.0): 27 intents of e-commerce support. */
export const BITEXT_TO_INTENT: Readonly<Record<string, Intent | null>> = {
  cancel_order: 'cancellation',
  change_order: null, // edits an order (add or remove items): not a purchase, not a complaint; no fair target
  change_shipping_address: null, // account details or order edit depending on context; left out
  check_cancellation_fee: 'cancellation', // asks what ending a contract costs: the cancellation is the point
  check_invoice: 'question', // wants to see a bill: information, no dispute
  check_invoices: 'question', // the 20,000-utterance set's spelling of check_invoice
  check_payment_methods: 'question',
  check_refund_policy: 'refund_request', // asks how to get money back: the refund is the point (our refund rule agrees)
  complaint: 'complaint',
  contact_customer_service: 'question', // asks how to reach support: information
  contact_human_agent: 'question', // as above; "other" would hide a real request
  create_account: 'account_help', // managing their account
  delete_account: 'cancellation', // the taxonomy puts closing the account under cancellation
  delivery_options: 'question',
  delivery_period: 'question', // when will it arrive: a status question
  edit_account: 'account_help',
  get_invoice: 'question',
  get_refund: 'refund_request',
  newsletter_subscription: null, // subscribe and unsubscribe share the label: purchase or cancellation; left out
  payment_issue: 'bug_report', // a payment that failed or went wrong: the taxonomy's "failed payment"
  place_order: 'purchase',
  recover_password: 'account_help',
  registration_problems: 'account_help', // cannot create or get into an account
  review: null, // asks to leave feedback, good or bad: neither praise nor complaint in itself
  set_up_shipping_address: null, // as change_shipping_address
  switch_account: 'account_help',
  track_order: 'question', // order status
  track_refund: 'refund_request' // chasing money owed back, as banking77's Refund_not_showing_up
}
