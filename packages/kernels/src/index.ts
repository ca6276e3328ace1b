export * from './runtime';
export * from './elementwise/elementwise';
